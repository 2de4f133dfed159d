//! The front doors: the embedded SSH server and the local unix socket.

pub mod gate;
pub mod local;
mod memory;
pub mod protocol;
mod quickack;
pub mod ssh;
