//! The progress bar: on stderr when it is a terminal, absent otherwise so
//! that logs and pipes stay clean.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress(ProgressBar);

impl Progress {
    /// A bar over `total_bytes` of input tensors.
    pub fn new(total_bytes: usize) -> Progress {
        let bar = ProgressBar::with_draw_target(
            Some(total_bytes as u64),
            if std::io::stderr().is_terminal() {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} {msg}",
            )
            .expect("the template is valid"),
        );
        Progress(bar)
    }

    /// Shows the tensor being processed.
    pub fn start(&self, name: &str) {
        self.0.set_message(name.to_string());
    }

    pub fn advance(&self, bytes: usize) {
        self.0.inc(bytes as u64);
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}
