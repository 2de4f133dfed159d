//! `redis:*`: Redis services (the commands are `services.rs`'s, for this kind).

super::services::service_namespace!("redis", &crate::services::redis::Redis, "Manage Redis services");
