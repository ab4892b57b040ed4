//! Hot-path benchmark (written below).
fn main() {}
