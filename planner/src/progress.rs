//! Progress bars on a terminal (stderr), nothing otherwise.

use std::io::IsTerminal;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use lifeline_replicator::Progress;

/// A byte progress bar shown only when stderr is a terminal.
pub struct Bar(Option<ProgressBar>);

impl Bar {
    /// A bar labelled `what`, or nothing when no one is watching.
    pub fn bytes(what: &str, quiet: bool) -> Bar {
        if quiet || !std::io::stderr().is_terminal() {
            return Bar(None);
        }
        let pb = ProgressBar::new(0);
        pb.set_style(
            ProgressStyle::with_template("{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                .expect("template")
                .progress_chars("=> "),
        );
        pb.set_message(what.to_string());
        Bar(Some(pb))
    }

    /// The callback the replicator reports to.
    pub fn callback(&self) -> Option<Progress> {
        let pb = self.0.clone()?;
        Some(Arc::new(move |done, total| {
            if pb.length() != Some(total) {
                pb.set_length(total);
            }
            pb.set_position(done);
        }))
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}
