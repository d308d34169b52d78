//! (tests in progress)
