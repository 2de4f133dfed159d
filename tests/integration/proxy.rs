//! berth's nginx on its own: a bad site is refused without touching the others; peers
//! change in nginx's memory without a reload and come back from the peers file when nginx
//! starts again.

use std::net::SocketAddr;

use berth::proxy::{Listen, Nginx, Routing, plan_site};
use berth::validate::PortMap;

use crate::harness::{free_port, http_get, temp_dir};

#[tokio::test]
async fn an_invalid_site_is_refused_and_the_other_sites_keep_serving() {
    let dir = temp_dir();
    let port = free_port();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let nginx = Nginx::new(dir.path(), Listen { http: listen, https });
    nginx.ensure_running().await.unwrap();
    let guard = KillOnDrop(nginx.master_pid().unwrap());

    // Backends for app "good": plain HTTP servers on two loopback addresses, one port.
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_port = backend.local_addr().unwrap().port();
    let second = tokio::net::TcpListener::bind(("127.0.0.2", backend_port)).await.unwrap();
    serve(backend, "good");
    serve(second, "second");
    let ports = [PortMap { scheme: berth::validate::Scheme::Http, host: 80, container: backend_port }];
    let domains = ["good.example.com".to_string()];
    let backends = ["127.0.0.1".to_string()];
    let routing = Routing { app: "good", domains: &domains, ports: &ports, listen: nginx.listen, tls: None };
    let site = plan_site(&routing, &nginx.acme_root()).unwrap();
    nginx.install_site(&site).await.unwrap();
    nginx.set_peers("good", 1, &backends).await.unwrap();
    let answer = tokio::task::spawn_blocking(move || http_get(port, "good.example.com", "/")).await.unwrap();
    assert_eq!(answer, (200, "good, forwarded".into()));

    // New peers: served at once, by the same workers (no reload).
    let workers = children(guard.0);
    nginx.set_peers("good", 2, &["127.0.0.2".to_string()]).await.unwrap();
    assert_eq!(nginx.live_peers("good").await.unwrap(), vec!["127.0.0.2"]);
    let answer = tokio::task::spawn_blocking(move || http_get(port, "good.example.com", "/")).await.unwrap();
    assert_eq!(answer, (200, "second, forwarded".into()));
    assert_eq!(children(guard.0), workers, "setting peers reloaded nginx");
    assert_eq!(nginx.inflight(&["127.0.0.1".into(), "127.0.0.2".into()]).await.unwrap(), 0);
    // A dead peer among live ones: the request goes to the next (connect refused is retried).
    nginx.set_peers("good", 3, &["127.0.0.3".to_string(), "127.0.0.2".to_string()]).await.unwrap();
    for _ in 0..4 {
        let answer = tokio::task::spawn_blocking(move || http_get(port, "good.example.com", "/")).await.unwrap();
        assert_eq!(answer, (200, "second, forwarded".into()));
    }
    nginx.set_peers("good", 2, &["127.0.0.2".to_string()]).await.unwrap();

    // A broken site for another app is refused, and changes nothing.
    let mut bad = plan_site(&Routing { app: "bad", ..routing.clone() }, &nginx.acme_root()).unwrap();
    bad.servers[0].listen = "127.0.0.1:99999".into();
    let err = nginx.install_site(&bad).await.unwrap_err();
    assert!(err.to_string().contains("nginx"), "{err}");
    assert!(!nginx.site_file("bad").exists());
    let answer = tokio::task::spawn_blocking(move || http_get(port, "good.example.com", "/")).await.unwrap();
    assert_eq!(answer, (200, "second, forwarded".into()));
    let unknown = tokio::task::spawn_blocking(move || http_get(port, "nobody.example.com", "/")).await.unwrap();
    assert_eq!(unknown.0, 404);

    // nginx stopped and started again: the peers come back from the peers file.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(guard.0), nix::sys::signal::Signal::SIGQUIT).unwrap();
    for _ in 0..100 {
        if nginx.master_pid().is_none() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(nginx.master_pid().is_none(), "nginx did not stop");
    nginx.ensure_running().await.unwrap();
    let guard = KillOnDrop(nginx.master_pid().unwrap());
    let answer = tokio::task::spawn_blocking(move || http_get(port, "good.example.com", "/")).await.unwrap();
    assert_eq!(answer, (200, "second, forwarded".into()));
    // An app without peers answers 502, never another app's page.
    nginx.remove_peers("good").await.unwrap();
    let gone = tokio::task::spawn_blocking(move || http_get(port, "good.example.com", "/")).await.unwrap();
    assert_eq!(gone.0, 502);
    drop(guard);
}

/// A backend answering `NAME, forwarded` when nginx set the forwarding headers.
fn serve(listener: tokio::net::TcpListener, name: &'static str) {
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).to_lowercase();
                let forwarded = request.contains("x-forwarded-for: 127.0.0.1") && request.contains("x-forwarded-proto: http");
                let body = if forwarded { format!("{name}, forwarded") } else { format!("{name}, headers missing") };
                let _ = s.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes()).await;
            });
        }
    });
}

/// An nginx master's worker processes.
fn children(pid: i32) -> Vec<String> {
    let mut all: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flat_map(|t| std::fs::read_to_string(t.unwrap().path().join("children")).unwrap_or_default().split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect();
    all.sort();
    all
}

struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0), nix::sys::signal::Signal::SIGTERM);
    }
}
