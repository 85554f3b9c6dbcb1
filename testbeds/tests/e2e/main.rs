//! The end-to-end suite: the sample workload replicated by the real `lifeline
//! agent` between two sites of a testbed, under each fault, then restored and
//! checked: no committed point lost or corrupted, the recovered volume checks
//! clean, data lost ≤ the RPO at the disaster instant, and after a cut the
//! transfer resumes without a full resend. Local cases run everywhere; netns
//! and real-filesystem cases need root and skip with a message otherwise.

mod cli;
mod faults;
mod harness;
mod netns;
mod real_data;
