//! Interpolation in runbook strings: `${vars.NAME}`, `${ports.NAME}`,
//! `${group.name|tenant|rpo|rto}`, `${volumes.NAME}` (a volume's path on the
//! site being recovered from), `${targets.NAME}` (where it is promoted to),
//! `${run.id|mode|dir|point|bin}` (`bin`: this `lifeline` binary) and `${steps.ID.OUTPUT}` (an earlier step's output;
//! the step must be among the step's dependencies). `$${` writes a literal `${`.

/// What a `${...}` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    Var(String),
    Port(String),
    Group(String),
    Volume(String),
    Target(String),
    Run(String),
    Step { id: String, output: String },
}

/// A piece of a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Lit(String),
    /// The reference and its text as written (without `${` `}`).
    Ref(Ref, String),
}

pub const GROUP_FIELDS: &[&str] = &["name", "tenant", "rpo", "rto"];
pub const RUN_FIELDS: &[&str] = &["id", "mode", "dir", "point", "bin"];

/// Splits a string into literals and references; an error says what is wrong.
pub fn parse(s: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        lit.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(r) = after.strip_prefix("$${") {
            lit.push_str("${");
            rest = r;
        } else if let Some(r) = after.strip_prefix("${") {
            let end = r
                .find('}')
                .ok_or_else(|| format!("`${{` without a closing `}}` in {s:?}"))?;
            let inner = &r[..end];
            if !lit.is_empty() {
                out.push(Piece::Lit(std::mem::take(&mut lit)));
            }
            out.push(Piece::Ref(parse_ref(inner)?, inner.to_string()));
            rest = &r[end + 1..];
        } else {
            lit.push('$');
            rest = &after[1..];
        }
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    Ok(out)
}

fn parse_ref(inner: &str) -> Result<Ref, String> {
    let inner = inner.trim();
    let (ns, rest) = inner.split_once('.').ok_or_else(|| {
        format!("`${{{inner}}}` names nothing: write ${{vars.NAME}}, ${{ports.NAME}}, ${{steps.ID.OUTPUT}}, ${{group.name}}, ${{volumes.NAME}}, ${{targets.NAME}} or ${{run.dir}}")
    })?;
    if rest.is_empty() {
        return Err(format!("`${{{inner}}}` lacks a name after `{ns}.`"));
    }
    Ok(match ns {
        "vars" => Ref::Var(rest.into()),
        "ports" => Ref::Port(rest.into()),
        "volumes" => Ref::Volume(rest.into()),
        "targets" => Ref::Target(rest.into()),
        "group" if GROUP_FIELDS.contains(&rest) => Ref::Group(rest.into()),
        "group" => return Err(format!("`${{{inner}}}`: the group has {}", list(GROUP_FIELDS, "group"))),
        "run" if RUN_FIELDS.contains(&rest) => Ref::Run(rest.into()),
        "run" => return Err(format!("`${{{inner}}}`: a run has {}", list(RUN_FIELDS, "run"))),
        "steps" => {
            let (id, output) = rest
                .split_once('.')
                .ok_or_else(|| format!("`${{{inner}}}` needs an output: ${{steps.{rest}.OUTPUT}}"))?;
            Ref::Step {
                id: id.into(),
                output: output.into(),
            }
        }
        other => {
            return Err(format!(
                "`${{{inner}}}`: unknown namespace `{other}` (vars, ports, steps, group, volumes, targets, run)"
            ));
        }
    })
}

fn list(fields: &[&str], ns: &str) -> String {
    fields
        .iter()
        .map(|f| format!("${{{ns}.{f}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Replaces the references `resolve` knows; leaves the others as written.
pub fn render_partial(s: &str, resolve: &mut impl FnMut(&Ref) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    for piece in parse(s)? {
        match piece {
            // A literal `${` must survive a second rendering: write it escaped.
            Piece::Lit(l) => out.push_str(&l.replace("${", "$${")),
            Piece::Ref(r, raw) => match resolve(&r) {
                Some(v) => out.push_str(&v.replace("${", "$${")),
                None => {
                    out.push_str("${");
                    out.push_str(&raw);
                    out.push('}');
                }
            },
        }
    }
    Ok(out)
}

/// Replaces every reference; an unresolved one is an error naming it.
pub fn render(s: &str, resolve: &mut impl FnMut(&Ref) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    for piece in parse(s)? {
        match piece {
            Piece::Lit(l) => out.push_str(&l),
            Piece::Ref(r, raw) => match resolve(&r) {
                Some(v) => out.push_str(&v),
                None => return Err(format!("`${{{raw}}}` has no value")),
            },
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references_and_escapes() {
        let p = parse("http://127.0.0.1:${ports.app}/x$${y} $5").unwrap();
        assert_eq!(
            p,
            vec![
                Piece::Lit("http://127.0.0.1:".into()),
                Piece::Ref(Ref::Port("app".into()), "ports.app".into()),
                Piece::Lit("/x${y} $5".into()),
            ]
        );
        assert_eq!(
            parse("${steps.promote.path.db}").unwrap()[0],
            Piece::Ref(
                Ref::Step {
                    id: "promote".into(),
                    output: "path.db".into()
                },
                "steps.promote.path.db".into()
            )
        );
        assert!(parse("${vars.x").unwrap_err().contains("closing"));
        assert!(parse("${nope.x}").unwrap_err().contains("unknown namespace"));
        assert!(parse("${group.colour}").unwrap_err().contains("${group.name}"));
        assert!(parse("${steps.a}").unwrap_err().contains("OUTPUT"));
    }

    #[test]
    fn partial_rendering_keeps_unknowns_and_escapes() {
        let mut r = |r: &Ref| match r {
            Ref::Var(v) if v == "a" => Some("A".to_string()),
            _ => None,
        };
        let once = render_partial("${vars.a}-${steps.s.pid}-$${lit}", &mut r).unwrap();
        assert_eq!(once, "A-${steps.s.pid}-$${lit}");
        let mut r2 = |r: &Ref| match r {
            Ref::Step { .. } => Some("42".to_string()),
            _ => None,
        };
        assert_eq!(render(&once, &mut r2).unwrap(), "A-42-${lit}");
        assert!(render("${vars.b}", &mut r).unwrap_err().contains("vars.b"));
    }
}
