//! berth's integration tests: the real daemon, the real OpenSSH client, the real local CLI.

mod harness;
mod hostile;

mod access;
mod api;
mod buildpacks;
mod commands;
mod crash;
mod dashboard;
mod cron;
mod deploy;
mod dokku;
mod drains;
mod firstrun;
mod gates;
mod https;
mod install;
mod invisible;
mod isolation;
mod metrics;
mod plugins;
mod previews;
mod processes;
mod proxy;
mod rootssh;
mod services;
mod state;
mod swarm;
mod wildcard;
