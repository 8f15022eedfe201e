//! Placeholder replaced by the layer benchmarks.
#![allow(missing_docs)]
fn main() {}
