#![cfg(feature = "integration")]
//! placeholder
