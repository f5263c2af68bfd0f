//! Handlers, one file per resource. They parse, call the domain, and shape the reply.

pub mod access;
pub mod agents;
pub mod audit;
pub mod brokers;
pub mod creds;
pub mod events;
pub mod islands;
pub mod live;
pub mod sessions;
pub mod ssh;
pub mod system;
pub mod tokens;
