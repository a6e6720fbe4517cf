//! Background workers. Each has a `run_once` that tests drive step by step
//! and a loop that `serve` spawns. Workers never hold a database lock while
//! they call the network.

pub mod outbox;
pub mod retention;
pub mod sweeper;
