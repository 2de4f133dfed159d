//! `postgres:*`: PostgreSQL services (the commands are `services.rs`'s, for this kind).

super::services::service_namespace!("postgres", &crate::services::postgres::Postgres, "Manage PostgreSQL databases");
