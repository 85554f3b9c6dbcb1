//! A strict parser of the Prometheus text exposition format 0.0.4, for the
//! tests that scrape the daemon's `/metrics`. It lived in the library while the
//! library wrote the format by hand; only tests read the format back, so it
//! lives with them.

use std::collections::{BTreeMap, HashSet};

use anyhow::{Result, anyhow, bail};

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One sample of a scrape. A timestamp, if the line had one, is checked and
/// dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A sample named `name` with `labels` and `value`, to compare with a scrape.
pub fn sample(name: &str, labels: &[(&str, &str)], value: f64) -> Sample {
    Sample {
        name: name.into(),
        labels: labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
        value,
    }
}

/// Parses the text exposition format 0.0.4 strictly, for tests and the daemon's
/// scrape test: every line must be a `# HELP`, a `# TYPE`, another comment, an
/// empty line or a well-formed sample, and the text must end with a newline.
/// It also refuses a second `# HELP` or `# TYPE` for a name, a `# TYPE` after
/// its family's samples, a family whose samples are not together, the same
/// series twice, and summaries and histograms without their `quantile` / `le`.
pub fn parse_exposition(text: &str) -> Result<Vec<Sample>> {
    if !text.is_empty() && !text.ends_with('\n') {
        bail!("the text does not end with a newline");
    }
    let mut parser = Exposition::default();
    for (i, line) in text.split_terminator('\n').enumerate() {
        parser
            .line(line)
            .map_err(|e| anyhow!("line {}: {e}: {line:?}", i + 1))?;
    }
    Ok(parser.samples)
}

#[derive(Default)]
struct Exposition {
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
    helps: HashSet<String>,
    /// Families that have samples, and the one whose samples came last.
    started: HashSet<String>,
    current: Option<String>,
    series: HashSet<(String, Vec<(String, String)>)>,
}

impl Exposition {
    fn line(&mut self, line: &str) -> Result<()> {
        if line.is_empty() {
            return Ok(());
        }
        if let Some(comment) = line.strip_prefix('#') {
            return self.comment(comment);
        }
        let sample = parse_sample(line)?;
        let family = self.family_of(&sample.name);
        match self.types.get(&family).map(String::as_str) {
            Some("summary") if sample.name == family && !sample.labels.contains_key("quantile") => {
                bail!("a summary's sample `{family}` needs a `quantile` label")
            }
            Some("histogram") if sample.name == format!("{family}_bucket") && !sample.labels.contains_key("le") => {
                bail!("a histogram's `{family}_bucket` sample needs an `le` label")
            }
            Some("histogram") if sample.name == family => bail!("a histogram has no sample named `{family}` itself"),
            _ => {}
        }
        if self.current.as_deref() != Some(family.as_str()) {
            if !self.started.insert(family.clone()) {
                bail!("the samples of `{family}` are not together");
            }
            self.current = Some(family);
        }
        let key = (
            sample.name.clone(),
            sample.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        );
        if !self.series.insert(key) {
            bail!("the same series appears twice");
        }
        self.samples.push(sample);
        Ok(())
    }

    /// The family a sample belongs to: its own name, or the summary or
    /// histogram it is the `_sum`, `_count` or `_bucket` of.
    fn family_of(&self, name: &str) -> String {
        for suffix in ["_sum", "_count", "_bucket"] {
            if let Some(base) = name.strip_suffix(suffix) {
                match self.types.get(base).map(String::as_str) {
                    Some("histogram") => return base.to_owned(),
                    Some("summary") if suffix != "_bucket" => return base.to_owned(),
                    _ => {}
                }
            }
        }
        name.to_owned()
    }

    fn comment(&mut self, comment: &str) -> Result<()> {
        let mut words = comment.trim_start_matches([' ', '\t']).splitn(2, [' ', '\t']);
        let keyword = words.next().unwrap_or_default();
        if keyword != "HELP" && keyword != "TYPE" {
            return Ok(());
        }
        let rest = words.next().unwrap_or_default().trim_start_matches([' ', '\t']);
        let (name, tail) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
        if !valid_metric_name(name) {
            bail!("`{name}` is not a metric name");
        }
        if self.started.contains(name) {
            bail!("# {keyword} for `{name}` after its samples");
        }
        if keyword == "HELP" {
            unescape(tail, false)?;
            if !self.helps.insert(name.to_owned()) {
                bail!("a second # HELP for `{name}`");
            }
            return Ok(());
        }
        let kind = tail.trim_matches([' ', '\t']);
        if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
            bail!("`{kind}` is not a type: counter, gauge, histogram, summary or untyped");
        }
        if self.types.insert(name.to_owned(), kind.to_owned()).is_some() {
            bail!("a second # TYPE for `{name}`");
        }
        Ok(())
    }
}

fn parse_sample(line: &str) -> Result<Sample> {
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        bail!("`{name}` is not a metric name");
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = parse_labels(inner, &mut labels)?;
    }
    if rest.trim_matches([' ', '\t']).is_empty() {
        bail!("no value");
    }
    let mut fields = rest.split([' ', '\t']).filter(|f| !f.is_empty());
    if !rest.starts_with([' ', '\t']) {
        bail!("the value must follow the name or labels after a space");
    }
    let value = fields.next().ok_or_else(|| anyhow!("no value"))?;
    let value = parse_value(value).ok_or_else(|| anyhow!("`{value}` is not a number"))?;
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| anyhow!("`{timestamp}` is not a timestamp in milliseconds"))?;
    }
    if let Some(extra) = fields.next() {
        bail!("unexpected `{extra}` after the value and timestamp");
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `a="x",b="y"}` (after the `{`), returning what follows the `}`.
fn parse_labels<'a>(mut s: &'a str, labels: &mut BTreeMap<String, String>) -> Result<&'a str> {
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let (name, rest) = s
            .split_once('=')
            .ok_or_else(|| anyhow!("a label needs `name=\"value\"`"))?;
        if !valid_label_name(name) {
            bail!("`{name}` is not a label name");
        }
        let rest = rest
            .strip_prefix('"')
            .ok_or_else(|| anyhow!("the value of label `{name}` is not quoted"))?;
        let end = closing_quote(rest).ok_or_else(|| anyhow!("the value of label `{name}` is not closed"))?;
        let value = unescape(&rest[..end], true)?;
        if labels.insert(name.to_owned(), value).is_some() {
            bail!("label `{name}` appears twice");
        }
        s = &rest[end + 1..];
        match s.as_bytes().first() {
            Some(b',') => s = &s[1..],
            Some(b'}') => {}
            _ => bail!("labels are separated by `,` and closed by `}}`"),
        }
    }
}

/// The index of the first `"` not escaped by a backslash.
fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

/// Undoes `\\` and `\n` (and `\"` in label values); any other escape is an error.
fn unescape(s: &str, quotes: bool) -> Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quotes => out.push('"'),
            Some(other) => bail!("`\\{other}` is not an escape here"),
            None => bail!("a lone `\\` at the end"),
        }
    }
    Ok(out)
}

/// A sample value as Go's `ParseFloat` reads it in Prometheus: decimals, `NaN`
/// and (signed) `Inf`.
fn parse_value(s: &str) -> Option<f64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    let word = ["nan", "inf", "infinity"]
        .iter()
        .any(|w| digits.eq_ignore_ascii_case(w));
    if !word && !digits.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_accepts_the_format_as_written_by_others() {
        let text = "# A comment\n\n# HELP x Some \\\\ help\n# TYPE x counter\nx{a=\"1\",} 1 1700000000000\n\
                    x{a=\"2\"}\t2\n# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 3\ns_count 2\n\
                    # TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1e-3\nh_count 2\nplain -Inf\nn nan\n";
        let got = parse_exposition(text).unwrap();
        let names: Vec<&str> = got.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "x", "x", "s", "s_sum", "s_count", "h_bucket", "h_sum", "h_count", "plain", "n"
            ]
        );
        assert_eq!(got[0], sample("x", &[("a", "1")], 1.0));
        assert_eq!(got[7].value, 2.0);
        assert_eq!(got[8].value, f64::NEG_INFINITY);
        assert_eq!(parse_exposition("").unwrap(), []);
    }

    #[test]
    fn parser_rejects_malformed_text() {
        let cases = [
            ("x 1", "does not end with a newline"),
            ("x\n", "no value"),
            ("x 1 2 3\n", "unexpected `3`"),
            ("x one\n", "`one` is not a number"),
            ("x 0x10\n", "not a number"),
            ("x 1 1.5\n", "not a timestamp"),
            ("1x 1\n", "`1x` is not a metric name"),
            ("x-y 1\n", "`x-y` is not a metric name"),
            ("x{a=1} 1\n", "not quoted"),
            ("x{a=\"1} 1\n", "not closed"),
            ("x{a=\"1\" b=\"2\"} 1\n", "separated by `,`"),
            ("x{a=\"1\",a=\"2\"} 1\n", "appears twice"),
            ("x{a=\"\\t\"} 1\n", "not an escape"),
            ("x{__name__=\"x\"} 1\n", "not a label name"),
            ("x{a=\"1\"}1\n", "after a space"),
            ("x 1\r\n", "not a number"),
            ("x 1\nx 2\n", "same series appears twice"),
            ("x 1\ny 1\nx{a=\"b\"} 1\n", "samples of `x` are not together"),
            ("# TYPE x gauge\n# TYPE x gauge\nx 1\n", "a second # TYPE"),
            ("# HELP x a\n# HELP x b\n", "a second # HELP"),
            ("x 1\n# TYPE x gauge\n", "after its samples"),
            ("# TYPE x meter\n", "`meter` is not a type"),
            ("# HELP x bad \\q\n", "not an escape"),
            ("# TYPE s summary\ns 1\n", "needs a `quantile` label"),
            ("# TYPE h histogram\nh_bucket 1\n", "needs an `le` label"),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", parse_exposition(text).unwrap_err());
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    proptest::proptest! {
        /// The exposition parser refuses or accepts, never panics.
        #[test]
        fn any_text_parses_or_fails(text in "[a-z_{}=\",# \\\\\n0-9.+-]{0,200}") {
            let _ = parse_exposition(&text);
        }
    }
}
