//! Black-box tests: a real keymint over HTTP and its CLI, each test run on
//! SQLite and on PostgreSQL (skipped with a notice when PostgreSQL is
//! unreachable, unless KEYMINT_TEST_REQUIRE_POSTGRES=1).

mod client;
mod helpers;
mod views;

mod admin;
mod browser;
mod checkout;
mod config;
mod console;
mod console_limits;
mod defaults;
mod durability;
mod edges;
mod email;
mod gumroad;
mod hardening;
mod licenses;
mod licensing;
mod operator;
mod ops;
mod portal;
mod providers;
mod recipes;
mod refunds;
mod replay;
mod retention;
mod serve;
mod startup;
