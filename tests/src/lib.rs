//! Lumen's traffic generator and end-to-end test support.
//!
//! [`arrivals`] is the table of ways readers arrive and what each must be
//! counted as; [`simulate`] turns it into a seeded population that views,
//! shares and re-shares; [`send`] and [`drive`] deliver it to ingest like the
//! tracker would; [`truth`] holds the expected counts.

pub mod arrivals;
pub mod drive;
pub mod send;
pub mod simulate;
pub mod truth;

pub use drive::{Progress, Report, TrafficConfig, drive};
pub use simulate::{Population, Simulation};
pub use truth::Truth;
