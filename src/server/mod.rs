//! The front doors: the embedded SSH server, the HTTP API and the local unix socket.

pub mod api;
mod dashboard;
mod http;
pub mod gate;
pub mod gatekeeper;
pub mod local;
mod memory;
pub mod protocol;
mod quickack;
pub mod ssh;
