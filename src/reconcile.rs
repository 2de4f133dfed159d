//! What should run against what runs, decided in one place. The desired side is the active
//! release and its formation; the observed side is the app's containers as the engine shows
//! them (only those berth made: see `runtime::made_by_berth`) with what berth knows of each
//! (stopped by berth, being started again). The answer is a [`Plan`]; the callers carry it
//! out: a deploy's rollout, `deploy::restore` (daemon or engine start, `ps:start`) and the
//! supervisor's heal (containers that died). Pure: no IO, no clock.

/// How far a reconcile goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Make what runs match the state: start what is missing or not running, keep what
    /// runs, retire every other container of the app.
    Restore,
    /// After deaths: route what runs, start again (after a backoff) what died on its own,
    /// leave what berth stopped and what is missing (a restore makes it).
    Heal,
    /// A new release goes live beside what runs: every slot of its formation starts anew,
    /// and every other container of the app retires once traffic has moved.
    Rollout,
}

/// One container of the app, as observed.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub id: String,
    pub process: String,
    pub index: u32,
    pub release: u32,
    pub state: State,
    /// Berth is starting it again right now (after its backoff): not routed, not touched.
    pub warming: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Running,
    /// It ended: berth stopped it (a retirement, `ps:stop`), or it died on its own.
    Exited { code: Option<i64>, by_berth: bool },
    /// Gone between the listing and the look at it.
    Gone,
}

/// A place in the formation: `web.1`, `worker.2`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Slot {
    pub process: String,
    pub index: u32,
}

/// What to do.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Slots to start a container in: none there, or it does not run (restore).
    pub start: Vec<Slot>,
    /// Containers that stay as they run.
    pub keep: Vec<String>,
    /// Web containers to route to: running, of the active release, not warming.
    pub route: Vec<String>,
    /// Containers that died on their own, to start again after their backoff (heal).
    pub restart: Vec<(Slot, String, Option<i64>)>,
    /// Containers outside the active release's formation, to retire (restore).
    pub retire: Vec<String>,
    /// A web container died on its own: its address is routed away from before any start.
    pub dead_web: bool,
}

/// The process type that is routed.
const WEB: &str = "web";

/// The plan for an app whose active release is `release`, run as `formation` (process
/// types and how many of each), given the containers `seen`.
pub fn plan(mode: Mode, release: u32, formation: &[(String, u32)], seen: &[Seen]) -> Plan {
    let mut plan = Plan::default();
    for (process, count) in formation {
        for index in 1..=*count {
            let slot = Slot { process: process.clone(), index };
            let here = seen.iter().find(|c| c.release == release && c.process == slot.process && c.index == index);
            let web = slot.process == WEB;
            match (mode, here) {
                (Mode::Restore, Some(c)) if c.state == State::Running => {
                    plan.keep.push(c.id.clone());
                    if web {
                        plan.route.push(c.id.clone());
                    }
                }
                (Mode::Restore, _) | (Mode::Rollout, _) => plan.start.push(slot),
                // Missing: a restore makes it; gone: its event brings another heal.
                (Mode::Heal, None) => {}
                (Mode::Heal, Some(c)) => match &c.state {
                    State::Running => {
                        plan.keep.push(c.id.clone());
                        if web && !c.warming {
                            plan.route.push(c.id.clone());
                        }
                    }
                    State::Exited { by_berth: true, .. } | State::Gone => {}
                    State::Exited { .. } if c.warming => {}
                    State::Exited { code, .. } => {
                        plan.dead_web |= web;
                        plan.restart.push((slot, c.id.clone(), *code));
                    }
                },
            }
        }
    }
    if mode != Mode::Heal {
        plan.retire = seen.iter().filter(|c| !plan.keep.contains(&c.id)).map(|c| c.id.clone()).collect();
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(spec: &str) -> Seen {
        // "id process.index vN state[+warming]", state: up | died:CODE | stopped | gone
        let words: Vec<&str> = spec.split_whitespace().collect();
        let (process, index) = words[1].split_once('.').unwrap();
        let (state, warming) = match words[3].strip_suffix("+warming") {
            Some(s) => (s, true),
            None => (words[3], false),
        };
        let state = match state {
            "up" => State::Running,
            "stopped" => State::Exited { code: Some(143), by_berth: true },
            "gone" => State::Gone,
            died => State::Exited { code: died.strip_prefix("died:").and_then(|c| c.parse().ok()), by_berth: false },
        };
        Seen { id: words[0].into(), process: process.into(), index: index.parse().unwrap(), release: words[2][1..].parse().unwrap(), state, warming }
    }

    fn formation(spec: &str) -> Vec<(String, u32)> {
        spec.split_whitespace().map(|p| p.split_once('=').unwrap()).map(|(t, n)| (t.to_string(), n.parse().unwrap())).collect()
    }

    fn slots(spec: &str) -> Vec<Slot> {
        spec.split_whitespace().map(|s| s.split_once('.').unwrap()).map(|(p, i)| Slot { process: p.into(), index: i.parse().unwrap() }).collect()
    }

    fn ids(spec: &str) -> Vec<String> {
        spec.split_whitespace().map(str::to_string).collect()
    }

    /// One case: what is desired and seen, and the plan's parts (ids or slots, space-separated).
    struct Case {
        what: &'static str,
        mode: Mode,
        formation: &'static str,
        seen: &'static [&'static str],
        start: &'static str,
        keep: &'static str,
        route: &'static str,
        restart: &'static str,
        retire: &'static str,
        dead_web: bool,
    }

    const R: Mode = Mode::Restore;
    const H: Mode = Mode::Heal;
    const D: Mode = Mode::Rollout;

    #[rustfmt::skip]
    const CASES: &[Case] = &[
        // Restore: start, keep, retire.
        Case { what: "nothing runs yet", mode: R, formation: "web=1", seen: &[], start: "web.1", keep: "", route: "", restart: "", retire: "", dead_web: false },
        Case { what: "all runs", mode: R, formation: "web=1", seen: &["a web.1 v3 up"], start: "", keep: "a", route: "a", restart: "", retire: "", dead_web: false },
        Case { what: "two webs and a worker run", mode: R, formation: "web=2 worker=1", seen: &["a web.1 v3 up", "b web.2 v3 up", "c worker.1 v3 up"], start: "", keep: "a b c", route: "a b", restart: "", retire: "", dead_web: false },
        Case { what: "the engine restarted: all stopped", mode: R, formation: "web=1 worker=1", seen: &["a web.1 v3 died:0", "b worker.1 v3 died:0"], start: "web.1 worker.1", keep: "", route: "", restart: "", retire: "a b", dead_web: false },
        Case { what: "one of two webs died", mode: R, formation: "web=2", seen: &["a web.1 v3 up", "b web.2 v3 died:137"], start: "web.2", keep: "a", route: "a", restart: "", retire: "b", dead_web: false },
        Case { what: "a container removed behind berth's back", mode: R, formation: "web=2", seen: &["a web.1 v3 up"], start: "web.2", keep: "a", route: "a", restart: "", retire: "", dead_web: false },
        Case { what: "a crash between checks and switch: the new release's containers run, the old is active", mode: R, formation: "web=1", seen: &["old web.1 v3 up", "new web.1 v4 up"], start: "", keep: "old", route: "old", restart: "", retire: "new", dead_web: false },
        Case { what: "a release recorded but not routed: its containers never started", mode: R, formation: "web=1", seen: &["old web.1 v2 up"], start: "web.1", keep: "", route: "", restart: "", retire: "old", dead_web: false },
        Case { what: "the old release's containers still retiring", mode: R, formation: "web=1", seen: &["old web.1 v2 up", "a web.1 v3 up"], start: "", keep: "a", route: "a", restart: "", retire: "old", dead_web: false },
        Case { what: "scaled down: the extra ones go", mode: R, formation: "web=1", seen: &["a web.1 v3 up", "b web.2 v3 up"], start: "", keep: "a", route: "a", restart: "", retire: "b", dead_web: false },
        Case { what: "a type no longer in the formation", mode: R, formation: "web=1", seen: &["a web.1 v3 up", "c clock.1 v3 up"], start: "", keep: "a", route: "a", restart: "", retire: "c", dead_web: false },
        Case { what: "web=0: nothing routed, the web goes", mode: R, formation: "web=0 worker=1", seen: &["a web.1 v3 up", "c worker.1 v3 up"], start: "", keep: "c", route: "", restart: "", retire: "a", dead_web: false },
        Case { what: "scaled up", mode: R, formation: "web=3", seen: &["a web.1 v3 up"], start: "web.2 web.3", keep: "a", route: "a", restart: "", retire: "", dead_web: false },
        Case { what: "a worker is never routed", mode: R, formation: "worker=1", seen: &["c worker.1 v3 up"], start: "", keep: "c", route: "", restart: "", retire: "", dead_web: false },
        Case { what: "stopped by berth counts as not running", mode: R, formation: "web=1", seen: &["a web.1 v3 stopped"], start: "web.1", keep: "", route: "", restart: "", retire: "a", dead_web: false },
        Case { what: "a container gone while looked at", mode: R, formation: "web=1", seen: &["a web.1 v3 gone"], start: "web.1", keep: "", route: "", restart: "", retire: "a", dead_web: false },
        Case { what: "warming is a heal's business", mode: R, formation: "web=1", seen: &["a web.1 v3 up+warming"], start: "", keep: "a", route: "a", restart: "", retire: "", dead_web: false },
        Case { what: "an empty formation retires everything", mode: R, formation: "", seen: &["a web.1 v3 up", "b worker.1 v2 died:1"], start: "", keep: "", route: "", restart: "", retire: "a b", dead_web: false },
        Case { what: "a newer release's container (a deploy's, crashed before it was recorded)", mode: R, formation: "web=1", seen: &["a web.1 v3 up", "n web.1 v9 died:0"], start: "", keep: "a", route: "a", restart: "", retire: "n", dead_web: false },
        Case { what: "a process named like web but not web", mode: R, formation: "webhooks=1", seen: &["w webhooks.1 v3 up"], start: "", keep: "w", route: "", restart: "", retire: "", dead_web: false },
        // Heal: route what runs, restart what died on its own, leave the rest.
        Case { what: "heal: all runs", mode: H, formation: "web=2", seen: &["a web.1 v3 up", "b web.2 v3 up"], start: "", keep: "a b", route: "a b", restart: "", retire: "", dead_web: false },
        Case { what: "heal: a web died", mode: H, formation: "web=2", seen: &["a web.1 v3 up", "b web.2 v3 died:137"], start: "", keep: "a", route: "a", restart: "web.2", retire: "", dead_web: true },
        Case { what: "heal: a worker died", mode: H, formation: "web=1 worker=1", seen: &["a web.1 v3 up", "c worker.1 v3 died:1"], start: "", keep: "a", route: "a", restart: "worker.1", retire: "", dead_web: false },
        Case { what: "heal: every web died", mode: H, formation: "web=2", seen: &["a web.1 v3 died:1", "b web.2 v3 died:1"], start: "", keep: "", route: "", restart: "web.1 web.2", retire: "", dead_web: true },
        Case { what: "heal: berth stopped it (retired, ps:stop)", mode: H, formation: "web=1", seen: &["a web.1 v3 stopped"], start: "", keep: "", route: "", restart: "", retire: "", dead_web: false },
        Case { what: "heal: warming and running: not routed before its checks", mode: H, formation: "web=1", seen: &["a web.1 v3 up+warming"], start: "", keep: "a", route: "", restart: "", retire: "", dead_web: false },
        Case { what: "heal: warming and still dead: not restarted twice", mode: H, formation: "web=1", seen: &["a web.1 v3 died:1+warming"], start: "", keep: "", route: "", restart: "", retire: "", dead_web: false },
        Case { what: "heal: missing: a restore makes it", mode: H, formation: "web=1", seen: &[], start: "", keep: "", route: "", restart: "", retire: "", dead_web: false },
        Case { what: "heal: gone while looked at", mode: H, formation: "web=1", seen: &["a web.1 v3 gone"], start: "", keep: "", route: "", restart: "", retire: "", dead_web: false },
        Case { what: "heal: old release's containers are a deploy's business", mode: H, formation: "web=1", seen: &["old web.1 v2 died:0", "a web.1 v3 up"], start: "", keep: "a", route: "a", restart: "", retire: "", dead_web: false },
        Case { what: "heal: a newer release's dead container is not restarted", mode: H, formation: "web=1", seen: &["a web.1 v3 up", "n web.1 v4 died:1"], start: "", keep: "a", route: "a", restart: "", retire: "", dead_web: false },
        Case { what: "heal: beyond the formation is not restarted", mode: H, formation: "web=1", seen: &["a web.1 v3 up", "b web.2 v3 died:1"], start: "", keep: "a", route: "a", restart: "", retire: "", dead_web: false },
        Case { what: "heal: no exit code known", mode: H, formation: "worker=1", seen: &["c worker.1 v3 died:?"], start: "", keep: "", route: "", restart: "worker.1", retire: "", dead_web: false },
        Case { what: "heal: web=0 routes nothing", mode: H, formation: "web=0", seen: &["a web.1 v3 up"], start: "", keep: "", route: "", restart: "", retire: "", dead_web: false },
        Case { what: "heal: exit 0 is a death too", mode: H, formation: "web=1", seen: &["a web.1 v3 died:0"], start: "", keep: "", route: "", restart: "web.1", retire: "", dead_web: true },
        Case { what: "heal: a dead worker and a live web", mode: H, formation: "web=1 worker=2", seen: &["a web.1 v3 up", "c worker.1 v3 up", "d worker.2 v3 died:2"], start: "", keep: "a c", route: "a", restart: "worker.2", retire: "", dead_web: false },
        Case { what: "heal: only the first container of a slot counts", mode: H, formation: "web=1", seen: &["a web.1 v3 up", "x web.1 v3 died:1"], start: "", keep: "a", route: "a", restart: "", retire: "", dead_web: false },
        Case { what: "restore: only the first container of a slot counts", mode: R, formation: "web=1", seen: &["a web.1 v3 up", "x web.1 v3 up"], start: "", keep: "a", route: "a", restart: "", retire: "x", dead_web: false },
        Case { what: "restore: slots are taken in formation order", mode: R, formation: "worker=1 web=1", seen: &[], start: "worker.1 web.1", keep: "", route: "", restart: "", retire: "", dead_web: false },
        Case { what: "restore: a dead worker is replaced, a live web kept", mode: R, formation: "web=1 worker=1", seen: &["a web.1 v3 up", "c worker.1 v3 died:1"], start: "worker.1", keep: "a", route: "a", restart: "", retire: "c", dead_web: false },
        Case { what: "restore: another release's container in a slot", mode: R, formation: "web=1", seen: &["o web.1 v1 up"], start: "web.1", keep: "", route: "", restart: "", retire: "o", dead_web: false },
        // Rollout (a deploy's swap): the whole new formation starts, everything else retires after the switch.
        Case { what: "rollout: a first deploy", mode: D, formation: "web=1", seen: &[], start: "web.1", keep: "", route: "", restart: "", retire: "", dead_web: false },
        Case { what: "rollout: the old release serves until the switch, then retires", mode: D, formation: "web=2 worker=1", seen: &["o web.1 v2 up", "w worker.1 v2 up"], start: "web.1 web.2 worker.1", keep: "", route: "", restart: "", retire: "o w", dead_web: false },
        Case { what: "rollout: dead and stopped containers of old releases retire too", mode: D, formation: "web=1", seen: &["a web.1 v2 died:1", "b web.1 v1 stopped"], start: "web.1", keep: "", route: "", restart: "", retire: "a b", dead_web: false },
        Case { what: "rollout: scaled to 0 starts nothing", mode: D, formation: "web=0", seen: &["a web.1 v2 up"], start: "", keep: "", route: "", restart: "", retire: "a", dead_web: false },
        Case { what: "rollout: a container left with the new version's number is replaced", mode: D, formation: "web=1", seen: &["n web.1 v3 up"], start: "web.1", keep: "", route: "", restart: "", retire: "n", dead_web: false },
    ];

    #[test]
    fn reconcile_table() {
        assert!(CASES.len() >= 40);
        for case in CASES {
            let seen: Vec<Seen> = case.seen.iter().map(|s| seen(s)).collect();
            let got = plan(case.mode, 3, &formation(case.formation), &seen);
            let restarted: Vec<Slot> = got.restart.iter().map(|(slot, _, _)| slot.clone()).collect();
            assert_eq!(got.start, slots(case.start), "{}: start", case.what);
            assert_eq!(got.keep, ids(case.keep), "{}: keep", case.what);
            assert_eq!(got.route, ids(case.route), "{}: route", case.what);
            assert_eq!(restarted, slots(case.restart), "{}: restart", case.what);
            assert_eq!(got.retire, ids(case.retire), "{}: retire", case.what);
            assert_eq!(got.dead_web, case.dead_web, "{}: dead web", case.what);
        }
    }

    #[test]
    fn a_restart_carries_the_container_and_its_exit_code() {
        let got = plan(Mode::Heal, 3, &formation("web=1"), &[seen("a web.1 v3 died:137")]);
        assert_eq!(got.restart, vec![(Slot { process: "web".into(), index: 1 }, "a".to_string(), Some(137))]);
    }
}
