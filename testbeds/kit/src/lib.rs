//! What Lifeline's test suites share, once: the planner's CLI tests
//! (`planner/tests/cli`), the end-to-end suite (`testbeds/tests/e2e`) and the
//! replicator's tests take these from here instead of keeping copies.
//!
//! - [`Run`]: the outcome of one `lifeline` command, with assertions on its exit
//!   code and output; [`sh`] runs any other program; [`on_path`], [`is_root`]
//!   say whether a test can run here.
//! - [`poll_until`] / [`poll_every`]: waiting for a condition with a deadline
//!   (no sleeps to wait for readiness).
//! - [`free_port`]: a port on 127.0.0.1 not handed out before in this process.
//! - [`events`]: the JSON lines a `--json` command printed.
//! - [`parse_utc_ms`] / [`format_utc_ms`]: the UTC times `--json` output holds.
//!
//! A dev-dependency only: no library crate of the workspace depends on it.

mod net;
mod poll;
mod process;
mod time;

pub use net::free_port;
pub use poll::{poll_every, poll_until};
pub use process::{Run, events, is_root, on_path, sh};
pub use time::{format_utc_ms, parse_utc_ms};
