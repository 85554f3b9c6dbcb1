//! Two-site testbeds, the sample workload and fault injection. For now: the
//! impairment proxy that adds latency between sites (this kernel has no netem);
//! the testbeds issue grows it (jitter, stalls, cuts) and adds the rest.

mod delay_proxy;

pub use delay_proxy::run_delay_proxy;
