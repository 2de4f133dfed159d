//! Deploys of images built elsewhere (`git:from-image`, `git:load-image`, `ps:rebuild` of
//! an app's source image): the image's name checked, pulled where a registry is reachable,
//! deployed as a release, and what the app was deployed from recorded.

use super::{CmdError, CmdResult, Ctx, failed};
use crate::deploy::{self, Source};
use crate::validate::{self, AppName};

/// `git:from-image APP IMAGE`: deploys an image built elsewhere (present on this engine, or
/// pulled from its registry), as a release like any other: checks, zero-downtime swap,
/// rollback.
pub async fn from_image(ctx: &mut Ctx<'_>, app: &AppName, image: &str, cause: &str) -> CmdResult {
    ctx.engine.store.load_app(app)?;
    let image = image_name(app, image)?;
    let runtime = ctx.engine.runtime().await.map_err(|e| failed(e.to_string()))?;
    if runtime.image_info(&image).await.is_none() {
        // The engine pulls from the host's network: a registry there must be public, and
        // what it answers is not shown (it could be any service of the host's).
        if let Some((host, port)) = registry_of(&image) {
            let allow_private = ctx.engine.store.load_global()?.allow_private_buildpack_hosts;
            crate::buildpack::public_host(&host, port, allow_private).await.map_err(|why| failed(format!("{image} cannot be pulled: {why}")))?;
        }
        ctx.out.step(format!("Pulling {image}")).await;
        let (name, tag) = split_tag(&image);
        runtime.pull(name, tag, PULL_LIMIT).await.map_err(|e| {
            tracing::warn!(%image, "pull failed: {e}");
            failed(format!("{image} is not on this server and cannot be pulled (the registry refused it or did not answer)"))
        })?;
    }
    deploy_image_as(ctx, app, (&image, &image), cause, Some(&image)).await
}

/// Deploys `image` (shown as `shown`) as a new release of `app`; once it serves,
/// `source_image` is what `ps:rebuild` deploys again (None: the running image).
pub(super) async fn deploy_image_as(ctx: &mut Ctx<'_>, app: &str, (image, shown): (&str, &str), cause: &str, source_image: Option<&str>) -> CmdResult {
    let _deploying = ctx.engine.deploy_lock(app, &ctx.out).await.map_err(CmdError::Failed)?;
    let source = Source::Image { image: image.to_string(), shown: shown.to_string() };
    crate::wildcard::serve_new_app(ctx.engine, app, &ctx.out).await;
    deploy::deploy_locked(ctx.engine, app, source, &ctx.cause(cause), &ctx.out).await.map_err(CmdError::from)?;
    set_source_image(ctx, app, source_image).await
}

/// Records what the app was deployed from (`git:set source-image`).
pub(super) async fn set_source_image(ctx: &Ctx<'_>, app: &str, image: Option<&str>) -> CmdResult {
    if ctx.engine.store.load_app(app)?.source_image.as_deref() == image {
        return Ok(());
    }
    ctx.engine
        .update_app(app, |c| {
            c.source_image = image.map(str::to_string);
            Ok::<_, CmdError>(())
        })
        .await
}

/// An image name as Docker takes it, and not another app's (`berth/OTHER:…`).
pub(super) fn image_name(app: &str, image: &str) -> Result<String, CmdError> {
    let ok = !image.is_empty()
        && image.len() <= 255
        && !image.starts_with(['-', '/', '.', ':'])
        && image.chars().all(|c| c.is_ascii_alphanumeric() || "./:_-@".contains(c));
    if !ok {
        return Err(failed(format!("Invalid image name {}", validate::quoted(image))));
    }
    if let Some(foreign) = crate::dockerfile::foreign_image(app, &[image.to_string()]) {
        return Err(failed(format!("{foreign} is another app's image: an app may deploy only public images and its own")));
    }
    Ok(image.to_string())
}

/// `name:tag` → (name, tag); `latest` when there is none (a registry port is not a tag).
/// The registry an image name pulls from, when it names one (`HOST[:PORT]/…`, as Docker
/// reads it: a first part with a `.` or a `:`, or `localhost`); None for Docker Hub.
fn registry_of(image: &str) -> Option<(String, u16)> {
    let (first, _) = image.split_once('/')?;
    if !(first.contains('.') || first.contains(':') || first == "localhost") {
        return None;
    }
    match first.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None => Some((first.to_string(), 443)),
    }
}

fn split_tag(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (image, "latest"),
    }
}

/// How long a pull may take.
const PULL_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_an_image_is_pulled_from() {
        assert_eq!(registry_of("127.0.0.1:5000/x:1"), Some(("127.0.0.1".into(), 5000)));
        assert_eq!(registry_of("localhost/x"), Some(("localhost".into(), 443)));
        assert_eq!(registry_of("registry.example.com/team/app:2"), Some(("registry.example.com".into(), 443)));
        assert_eq!(registry_of("library/python:3"), None);
        assert_eq!(registry_of("python:3"), None);
    }
}
