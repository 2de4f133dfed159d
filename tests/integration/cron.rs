//! Scheduled jobs and scheduled backups: app.json's `cron` entries run each minute in
//! one-off containers of the active release, their output in `logs APP -p cron`; a job
//! still running at its next time is skipped and says so; `cron:run` runs one now; a
//! postgres service's backup schedule leaves dumps, the oldest pruned.

use std::time::Duration;

use crate::harness::{AppRepo, Daemon, stack_image, web_dockerfile, poll};

#[test]
fn cron_jobs_run_each_minute_skip_while_running_and_run_on_demand() {
    let d = Daemon::start();
    d.ssh("apps:create ticker").ok();
    d.ssh("storage:mount ticker ticks:/data").ok();
    let repo = AppRepo::new(&d, "ticker");
    let app_json = r#"{"cron": [
        {"command": "date +%s >> /data/ticks; echo ticked", "schedule": "* * * * *"},
        {"command": "echo slow starts; sleep 75", "schedule": "* * * * *"}
    ]}"#;
    repo.write("Dockerfile", &web_dockerfile("ticker", 0)).write("app.json", app_json).commit("v1");
    let out = repo.push(&d, "main");
    assert_eq!(out.code, 0, "{out:#?}");

    // The jobs as the active release has them, with stable ids.
    let listed = d.ssh("cron:list ticker --format json").ok().stdout.clone();
    let jobs: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    assert_eq!(jobs.len(), 2, "{listed}");
    let id = |n: usize| jobs[n]["id"].as_str().unwrap().to_string();
    assert!(jobs[0]["next_run"].as_str().is_some_and(|t| t.ends_with("UTC")), "{listed}");
    assert_eq!(d.ssh("cron:report ticker --cron-task-count").ok().stdout, "2\n");

    // cron:run: now, its output to the caller, its exit code.
    let out = d.ssh(&format!("cron:run ticker {}", id(0)));
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.contains("ticked"), "{out:#?}");
    d.ssh("cron:run ticker nope").refused("has no cron job");

    // Two scheduled minutes: the quick job ran each time; the slow one was still running
    // at the second, which was skipped and said so.
    let ticks = d.root().join("storage/ticker/ticks/ticks");
    let on_demand = std::fs::read_to_string(&ticks).unwrap().lines().count();
    assert_eq!(on_demand, 1);
    poll(Duration::from_secs(150), "two scheduled runs of the quick job", || {
        let n = std::fs::read_to_string(&ticks).unwrap_or_default().lines().count();
        if n >= 3 { Ok(()) } else { Err(format!("{n} ticks")) }
    });
    // Each job's output and end, prefixed by job, and the skip.
    let wanted = [format!("cron[{}]: skipped", id(1)), format!("cron[{}]: ticked", id(0)), format!("cron[{}]: slow starts", id(1)), format!("cron[{}]: exited with 0", id(0))];
    poll(Duration::from_secs(30), "every job's lines in the cron log", || {
        let log = d.ssh("logs ticker -p cron -n 200").ok().stdout.clone();
        let missing: Vec<&String> = wanted.iter().filter(|w| !log.contains(w.as_str())).collect();
        if missing.is_empty() && log.lines().all(|l| l.starts_with("ticker[cron]: ")) { Ok(()) } else { Err(format!("missing {missing:?} in:\n{log}")) }
    });
    // The job containers are gone once they end.
    // (The quick job of the minute just begun may still be ending: wait for it, not the slow one.)
    poll(Duration::from_secs(30), "only the slow job's container left", || {
        let left = d.container_ids(true, &["berth.app=ticker", "berth.one-off=cron"]);
        if left.len() <= 1 { Ok(()) } else { Err(format!("still there: {left:?}")) }
    });

    // A bad schedule fails the push, and the jobs that run stay.
    repo.write("app.json", r#"{"cron": [{"command": "x", "schedule": "61 * * * *"}]}"#).commit("bad");
    let out = repo.push(&d, "main");
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("Invalid cron schedule"), "{out:#?}");
    assert_eq!(d.ssh("cron:report ticker --cron-task-count").ok().stdout, "2\n");
}

#[test]
fn a_backup_schedule_leaves_dumps_and_prunes_the_oldest() {
    let d = Daemon::start();
    stack_image(&d);
    let out = d.ssh("postgres:create backed");
    assert_eq!(out.code, 0, "{out:#?}");
    d.ssh("postgres:backup-schedule backed '61 * * * *'").refused("Invalid cron schedule");
    d.ssh("redis:backup-schedule nope '* * * * *'").refused("does not exist");
    let dir = d.root().join("backups/postgres/backed");
    let dumps = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&dir).map(|r| r.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect()).unwrap_or_default();
        names.sort();
        names
    };
    // Now, twice (one second apart: one file each), keeping 2.
    for _ in 0..2 {
        let out = d.ssh("postgres:backup backed --keep 2");
        assert_eq!(out.code, 0, "{out:#?}");
        assert!(out.stdout.contains("Backed up postgres service backed"), "{out:#?}");
        std::thread::sleep(Duration::from_millis(1100));
    }
    assert_eq!(dumps().len(), 2, "{:?}", dumps());
    let first = dumps()[0].clone();
    // A dump is pg_dump's custom format.
    let bytes = std::fs::read(dir.join(&first)).unwrap();
    assert!(bytes.starts_with(b"PGDMP"), "not a pg_dump archive");
    // On schedule: a new dump within the minute, and the oldest goes (keep 2).
    d.ssh("postgres:backup-schedule backed '* * * * *' --keep 2").ok();
    let info = d.ssh("postgres:info backed --format json").ok().stdout.clone();
    assert!(info.contains(r#""backup-schedule":"* * * * * (keeping 2)""#), "{info}");
    poll(Duration::from_secs(90), "a scheduled dump", || if dumps().contains(&first) { Err(format!("{:?}", dumps())) } else { Ok(()) });
    assert_eq!(dumps().len(), 2, "{:?}", dumps());
    d.ssh("postgres:backup-unschedule backed").ok();
    d.ssh("postgres:destroy backed --force").ok();
}
