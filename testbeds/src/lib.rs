//! Two-site testbeds, the sample workload and fault injection (grown by the testbeds issue).
