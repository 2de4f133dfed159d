//! How an app's site file changes: a candidate is rendered and checked by nginx on its
//! own (`check_site`), then swapped in with a reload (`switch_site`); a site whose only
//! change is a renewed certificate goes into nginx's memory instead, and a reload nginx
//! refuses puts the old site back.

use std::path::{Path, PathBuf};

use super::site::{Site, needs_reload};
use super::{Nginx, ProxyError, io};

impl Nginx {
    /// Checks `site` as the app's site on its own, then swaps it in and reloads nginx.
    /// On any failure the old site stays in place and keeps serving.
    pub async fn install_site(&self, site: &Site) -> Result<(), ProxyError> {
        let candidate = self.check_site(site).await?;
        self.switch_site(candidate).await
    }

    /// Whether `candidate` is what is in place already: no reload (`needs_reload`) and the
    /// same certificate as the site this daemon placed; for an app it has not placed yet
    /// (the first route after a start), the rendered text against the file, which then
    /// counts as placed.
    fn in_place(&self, candidate: &Candidate) -> bool {
        let mut placed = self.placed.lock().unwrap_or_else(|e| e.into_inner());
        match placed.get(&candidate.model.app) {
            Some(old) => !needs_reload(Some(old), &candidate.model) && old.certificate() == candidate.model.certificate() && candidate.site.exists(),
            None => {
                let same = std::fs::read(&candidate.site).is_ok_and(|current| current == candidate.text.as_bytes());
                if same {
                    placed.insert(candidate.model.app.clone(), candidate.model.clone());
                }
                same
            }
        }
    }

    /// Prepares `site` as the app's next site: nginx checks it on its own (nothing that
    /// serves is touched). A site the one in place makes a reload needless needs no check.
    pub async fn check_site(&self, model: &Site) -> Result<Candidate, ProxyError> {
        let app = model.app.as_str();
        let text = &self.render_site(model)?;
        let site = self.site_file(app);
        let path = self.sites_dir().join(format!(".{app}.conf.{:08x}.candidate", rand::random::<u32>()));
        let mut candidate = Candidate { site, path, text: text.to_string(), model: model.clone(), checked: false };
        if self.in_place(&candidate) {
            return Ok(candidate);
        }
        let check_conf = self.prefix.join(format!(".check-{app}-{:08x}.conf", rand::random::<u32>()));
        let check_pid = self.prefix.join(format!(".check-{app}.pid"));
        std::fs::write(&candidate.path, text).map_err(io(&candidate.path))?;
        let check_main = self.render_main(&candidate.path, &check_pid, false)?;
        std::fs::write(&check_conf, check_main).map_err(io(&check_conf))?;
        let checked = self.test_config(&check_conf).await;
        let _ = std::fs::remove_file(&check_conf);
        checked?;
        candidate.checked = true;
        Ok(candidate)
    }

    /// Puts a checked site in place and reloads nginx; nothing to do when the same site is
    /// already there. A site whose only change is a new certificate (a renewal) reloads
    /// nothing: its bundle is put in nginx's memory (`berth.certificate`). If nginx refuses
    /// the whole config or the reload, the old site is put back and keeps serving.
    pub async fn switch_site(&self, candidate: Candidate) -> Result<(), ProxyError> {
        if self.in_place(&candidate) {
            return Ok(());
        }
        if !candidate.checked {
            // Planned while equal to the site in place, which has changed since.
            let model = candidate.model.clone();
            return Box::pin(self.install_site(&model)).await;
        }
        let site = candidate.site.clone();
        let previous = std::fs::read(&site).ok();
        let placed = self.placed.lock().unwrap_or_else(|e| e.into_inner()).get(&candidate.model.app).cloned();
        let certificate_only = previous.is_some() && placed.is_some_and(|old| !needs_reload(Some(&old), &candidate.model));
        std::fs::rename(&candidate.path, &site).map_err(io(&site))?;
        crate::crashpoint("site-written");
        // The file first: a reload meanwhile (another app's) loads the new bundle. Workers
        // serve the table's only while it is newer than the one their config names.
        if certificate_only {
            match self.put_certificate(&candidate.model).await {
                Ok(()) => {
                    self.place(&candidate.model);
                    return Ok(());
                }
                Err(e) => tracing::warn!("{e}; reloading nginx to serve the new certificate of {}", candidate.model.app),
            }
        }
        // The whole config once more: a site can only conflict with another through nginx
        // itself (e.g. a listen option); if so, put the old site back.
        let put_back = |previous: &Option<Vec<u8>>| -> Result<(), ProxyError> {
            match previous {
                Some(old) => crate::store::write_atomic(&site, old, 0o644).map_err(io(&site)),
                None => std::fs::remove_file(&site).map_err(io(&site)),
            }
        };
        if let Err(e) = self.test_config(&self.main_conf()).await {
            put_back(&previous)?;
            return Err(e);
        }
        // nginx -t cannot know that a port is taken: the reload can still fail (nginx then
        // keeps its old config). The old site goes back, or every later reload would fail too.
        if let Err(e) = self.reload().await {
            put_back(&previous)?;
            return Err(self.reload_failure().unwrap_or(e));
        }
        // nginx's table then names what its config loaded: an entry left from before cannot
        // pass for newer, even after the clock went back.
        if candidate.model.certificate().is_some() {
            let _ = self.put_certificate(&candidate.model).await;
        }
        self.place(&candidate.model);
        Ok(())
    }

    /// Remembers `site` as the app's site in place (what `in_place` compares with).
    fn place(&self, site: &Site) {
        self.placed.lock().unwrap_or_else(|e| e.into_inner()).insert(site.app.clone(), site.clone());
    }

    /// Serves the site's certificate from nginx's memory (`PUT /certs`) without a reload.
    async fn put_certificate(&self, site: &Site) -> Result<(), ProxyError> {
        let Some(bundle) = site.certificate() else { return Err(ProxyError::Nginx("the site has no certificate".into())) };
        if self.master_pid().is_none() {
            return Err(ProxyError::Nginx("nginx is not running".into()));
        }
        let pem = std::fs::read_to_string(bundle).map_err(io(Path::new(bundle)))?;
        self.control("PUT", "/certs", &format!("{} {bundle}\n{pem}", site.app)).await.map(|_| ())
    }

    /// Forgets the app's certificate in nginx's memory (its site went).
    pub(super) async fn forget_certificate(&self, app: &str) {
        if self.master_pid().is_some() {
            let _ = self.control("PUT", "/certs", &format!("{app}\n")).await;
        }
    }
}

/// An app's next site, checked by nginx on its own, not yet in place. Dropped unused, its
/// file goes.
pub struct Candidate {
    /// The app's site file, and where the candidate waits beside it.
    site: PathBuf,
    path: PathBuf,
    text: String,
    model: Site,
    checked: bool,
}

impl Drop for Candidate {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
