//! The connection state machine (states, backoff, activity timer).
//!
//! Filled by the realtime-connection issue: a sans-IO machine that takes frames,
//! close events and `now_ms`, and returns actions for the wasm boundary to run.
