//! The daemon's work, one file per kind of job: [`point`] (a backup or a
//! replication cycle, and the RPO gauges), [`prune`], [`verify`], [`gc`] and
//! [`drill`] (a `lifeline drill` child process). What they share is in
//! [`super::shared`].

mod drill;
mod gc;
mod point;
mod prune;
mod verify;
