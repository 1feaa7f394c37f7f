//! Serve-loop tests over in-memory streams with a fake driver.
