//! berth's nginx on its own: a bad site is refused without touching the others.

use std::net::SocketAddr;

use berth::proxy::{Listen, Nginx, Routing, plan_site};
use berth::validate::PortMap;

use crate::harness::{free_port, http_get};

#[tokio::test]
async fn an_invalid_site_is_refused_and_the_other_sites_keep_serving() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let nginx = Nginx::new(dir.path(), Listen { http: listen, https });
    nginx.ensure_running().await.unwrap();
    let guard = KillOnDrop(nginx.master_pid().unwrap());

    // A backend for app "good": a plain HTTP server on loopback.
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_port = backend.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let (mut s, _) = backend.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).to_lowercase();
                let forwarded = request.contains("x-forwarded-for: 127.0.0.1") && request.contains("x-forwarded-proto: http");
                let body = if forwarded { "good, forwarded" } else { "good, headers missing" };
                let _ = s.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes()).await;
            });
        }
    });
    let ports = [PortMap { scheme: berth::validate::Scheme::Http, host: 80, container: backend_port }];
    let domains = ["good.example.com".to_string()];
    let backends = ["127.0.0.1".to_string()];
    let routing = Routing { app: "good", release: 1, domains: &domains, ports: &ports, backends: &backends, listen: nginx.listen, tls: None };
    let site = plan_site(&routing, &nginx.acme_root()).unwrap();
    nginx.install_site("good", &nginx.render_site(&site).unwrap()).await.unwrap();
    let answer = tokio::task::spawn_blocking(move || http_get(port, "good.example.com", "/")).await.unwrap();
    assert_eq!(answer, (200, "good, forwarded".into()));

    // A broken site for another app is refused, and changes nothing.
    let err = nginx.install_site("bad", "server { listen 127.0.0.1:1; this is not nginx }").await.unwrap_err();
    assert!(err.to_string().contains("nginx"), "{err}");
    assert!(!nginx.site_file("bad").exists());
    let answer = tokio::task::spawn_blocking(move || http_get(port, "good.example.com", "/")).await.unwrap();
    assert_eq!(answer, (200, "good, forwarded".into()));
    let unknown = tokio::task::spawn_blocking(move || http_get(port, "nobody.example.com", "/")).await.unwrap();
    assert_eq!(unknown.0, 404);
    drop(guard);
}

struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0), nix::sys::signal::Signal::SIGTERM);
    }
}
