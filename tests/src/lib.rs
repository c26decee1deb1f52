//! The deterministic simulation harness shared by scenario tests and the `simulation` example.
