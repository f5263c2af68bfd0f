//! Dejima: a daemon (`dejimad`) and CLI (`dejima`) that give every project an isolated Docker
//! island where coding agents run in tmux. The library holds everything; the binaries are thin.

pub mod api;
pub mod audit;
pub mod auth;
pub mod broker;
pub mod cli;
pub mod client;
pub mod creds;
pub mod daemon;
pub mod doctor;
pub mod egress;
pub mod error;
pub mod events;
pub mod http;
pub mod image;
pub mod island;
pub mod latch;
pub mod metrics;
pub mod process;
pub mod runtime;
pub mod session;
pub mod ssh;
pub mod store;
pub mod update;
pub mod util;
