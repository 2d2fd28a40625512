//! Integration tests: the real router over a real SQLite file, driven with
//! `tower::ServiceExt::oneshot`.

mod harness;

mod browser_writes;
mod e2ee;
mod fuzz;
mod limits;
mod messages;
mod persistence;
mod publish;
mod realtime_auth;
mod rooms;
mod session;
