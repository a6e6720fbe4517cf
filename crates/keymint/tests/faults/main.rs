//! Fault tests: keymint crashed, starved of its database or its email
//! provider, and held by slow clients. Each asserts that nothing answered
//! 2xx is lost or duplicated and that service resumes by itself.
//!
//! Run with `cargo test -p keymint --test faults` (part of
//! `cargo test --workspace`; PostgreSQL parts skip with a notice when it is
//! unreachable, unless KEYMINT_TEST_REQUIRE_POSTGRES=1).

#[path = "../api/client.rs"]
mod client;
#[path = "../api/helpers.rs"]
mod helpers;
#[path = "../api/views.rs"]
mod views;

mod crash;
mod database;
mod email;
mod proxy;
mod replicas;
mod slow_clients;
