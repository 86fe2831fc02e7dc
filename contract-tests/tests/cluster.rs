//! Several hubs on one PostgreSQL database and one RabbitMQ vhost, as
//! `config/cluster.toml` runs them: partners may send to any instance, the
//! same MSH-10 sent to two instances is processed once, every outbox row is
//! published by one instance, and what a killed instance had claimed is
//! published by another once its lease ran out. Nothing an instance
//! acknowledged is lost; no event id is delivered twice in the store.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use contract_tests::load::{Load, MESSAGE};
use contract_tests::pg::Database;
use contract_tests::proxy::Proxy;
use contract_tests::rabbit::{assert_all_arrived, drain_ids, Received, Vhost, BROKER};
use contract_tests::{fixture, http_get, repo, with_control_id, Ack, Hub, Partner, Setup};

/// How long an instance's claim on outbox rows lasts (`store.claim_lease_ms`);
/// short, so that a killed instance's rows come back within the test.
const LEASE_MS: u64 = 3000;
/// The queue the bench message's `qc.result_reported` events go to
/// (`routes/rabbitmq/default.toml`).
const QUEUE: &str = "cgt.qc-results";

/// Starts one hub per id on `db` and `amqp_url`, all at once (their
/// migrations race, as when a cluster starts together).
/// `[identity]` of every hub in these tests: one patient-data key for all.
const SHARED_IDENTITY: &str = "on_unknown = \"route\"\n\
    phi_keys = [{ id = \"ct\", key = \"0101010101010101010101010101010101010101010101010101010101010101\", current = true }]";

fn start(db: &Database, amqp_url: &str, ids: &[&str]) -> Vec<Hub> {
    let store = format!(
        "url = \"{}\"\nread_connections = 4\nclaim_lease_ms = {LEASE_MS}\n",
        db.url()
    );
    // A long confirm timeout: a hub whose link hangs (the second test) keeps
    // waiting, its rows claimed, until the test kills it.
    let extra = format!(
        "[amqp]\nurl = \"{amqp_url}\"\nconfirm_timeout_ms = 20000\nreconnect_max_ms = 1000\n\
         [sinks.rabbitmq]\ntype = \"amqp\"\n"
    );
    let routes = std::fs::read_to_string(repo().join("routes/rabbitmq/default.toml"))
        .expect("routes/rabbitmq");
    std::thread::scope(|s| {
        let starting: Vec<_> = ids
            .iter()
            .map(|&id| {
                let (store, extra, routes) = (&store, &extra, &routes);
                s.spawn(move || {
                    Hub::start_with(Setup {
                        // The instance id as an operator gives it, per process.
                        env: &[("CGTHUB__INSTANCE__ID", id)],
                        routes: Some(routes),
                        config_extra: Some(extra),
                        store: Some(store),
                        // Hubs on one store seal and hash patient data with
                        // one key (a hub with another refuses to start).
                        identity: Some(SHARED_IDENTITY),
                        ..Setup::default()
                    })
                })
            })
            .collect();
        starting
            .into_iter()
            .map(|h| h.join().expect("hub started (its log is above)"))
            .collect()
    })
}

/// Sends `DUP-0 … DUP-{n-1}` to `a` and to `b` at the same time, each over
/// its own connection; the ACK pairs.
fn send_to_both(a: &Hub, b: &Hub, n: usize) -> Vec<(String, Ack, Ack)> {
    let base = String::from_utf8(fixture(MESSAGE)).expect("UTF-8 fixture");
    let ids: Vec<String> = (0..n).map(|i| format!("DUP-{i}")).collect();
    let send = |hub: &Hub| {
        let (base, ids) = (&base, &ids);
        let addr = hub.mllp;
        move || {
            let mut p = Partner::connect(addr);
            ids.iter()
                .map(|id| p.send(with_control_id(base, id).as_bytes()))
                .collect::<Vec<Ack>>()
        }
    };
    let (from_a, from_b) = std::thread::scope(|s| {
        let ta = s.spawn(send(a));
        let tb = s.spawn(send(b));
        (ta.join().expect("partner A"), tb.join().expect("partner B"))
    });
    ids.into_iter()
        .zip(from_a.into_iter().zip(from_b))
        .map(|(id, (x, y))| (id, x, y))
        .collect()
}

/// MSA-3, the ACK's text.
fn ack_text(ack: &Ack) -> String {
    ack.segment("MSA")
        .and_then(|f| f.get(3).cloned())
        .unwrap_or_default()
}

/// MSH-10 of the ACK: `CGT<row of the message in the store>`.
fn ack_control_id(ack: &Ack) -> String {
    ack.segment("MSH")
        .and_then(|f| f.get(9).cloned())
        .unwrap_or_default()
}

/// Every stored event id, by its message's MSH-10.
fn events_by_message(db: &Database) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for r in db.query(
        "SELECT m.message_id, e.event_id FROM events e JOIN messages m ON m.id = e.message_row",
    ) {
        out.entry(r[0].clone()).or_default().push(r[1].clone());
    }
    out
}

/// Checks the store's outbox: every row delivered, each event id in
/// exactly one delivered row. Returns the delivered event ids.
fn assert_delivered_once(db: &Database) -> HashSet<String> {
    let not_delivered =
        db.query("SELECT id, event_id, state FROM outbox WHERE state <> 'delivered'");
    assert!(
        not_delivered.is_empty(),
        "{} outbox row(s) not delivered, e.g. {:?}",
        not_delivered.len(),
        not_delivered.first()
    );
    let twice = db.query(
        "SELECT event_id, count(*) FROM outbox WHERE state = 'delivered' \
         GROUP BY event_id HAVING count(*) > 1",
    );
    assert!(
        twice.is_empty(),
        "{} event id(s) in more than one delivered outbox row, e.g. {:?}",
        twice.len(),
        twice.first()
    );
    db.query("SELECT event_id FROM outbox WHERE state = 'delivered'")
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
}

/// An event's outbox row and what the hubs logged about it, for a failure
/// message.
fn outbox_row(db: &Database, event_id: &str, hubs: &[Hub]) -> String {
    let row = db.query(&format!(
        "SELECT o.id, o.state, o.attempts, o.lease_owner, o.lease_until, o.delivered_at, \
         o.last_error, m.message_id FROM outbox o JOIN events e ON e.event_id = o.event_id \
         JOIN messages m ON m.id = e.message_row WHERE o.event_id = '{event_id}'"
    ));
    let logged: Vec<String> = hubs
        .iter()
        .flat_map(|h| {
            h.log()
                .lines()
                .filter(|l| l.contains(event_id))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    format!("{event_id}: {row:?}; logged: {logged:?}")
}

/// How many times each message id arrived.
fn arrivals(got: &[Received]) -> HashMap<String, usize> {
    let mut n: HashMap<String, usize> = HashMap::new();
    for m in got {
        *n.entry(m.message_id.clone().expect("message_id set"))
            .or_default() += 1;
    }
    n
}

#[test]
fn three_hubs_share_one_store_and_a_killed_one_loses_nothing() {
    const CONNECTIONS: usize = 2;
    const IN_FLIGHT: usize = 8;
    const PER_CONNECTION: usize = 400;
    const DUPLICATES: usize = 20;
    let started = Instant::now();
    let db = Database::new();
    let mut v = Vhost::new();
    let mut hubs = start(&db, &v.url(), &["hub-a", "hub-b", "hub-c"]);
    let up = started.elapsed();

    let loads: Vec<Load> = hubs
        .iter()
        .zip(["A", "B", "C"])
        .map(|(h, tag)| Load::start(h.mllp, tag, CONNECTIONS, IN_FLIGHT, PER_CONNECTION))
        .collect();
    // The same messages to two instances at the same moment, beside the load.
    let dups = send_to_both(&hubs[0], &hubs[1], DUPLICATES);

    // SIGKILL hub-c mid-stream; the others keep taking messages.
    loads[2].wait_acked(CONNECTIONS * PER_CONNECTION / 4);
    let at_kill = [loads[0].acked_count(), loads[1].acked_count()];
    hubs[2].kill();
    let total = CONNECTIONS * PER_CONNECTION;
    loads[0].wait_acked((at_kill[0] + 100).min(total));
    loads[1].wait_acked((at_kill[1] + 100).min(total));
    let mut loads = loads.into_iter();
    let (la, lb, lc) = (
        loads.next().unwrap(),
        loads.next().unwrap(),
        loads.next().unwrap(),
    );
    let acked_c = lc.finish(true);
    assert!(
        acked_c.len() < CONNECTIONS * PER_CONNECTION,
        "the kill landed before hub-c's load finished"
    );
    let mut acked = la.finish(false);
    acked.extend(lb.finish(false));
    assert_eq!(
        acked.len(),
        2 * CONNECTIONS * PER_CONNECTION,
        "hub-a and hub-b acknowledged all their partners' messages"
    );
    acked.extend(acked_c.iter().cloned());
    // hub-c's partners reconnect (to hub-a, where HAProxy would send them)
    // and resend what had no ACK: what hub-c had stored before it died is
    // answered as a duplicate of the stored row, the rest is taken anew.
    let base = String::from_utf8(fixture(MESSAGE)).expect("UTF-8 fixture");
    let mut resent_dups = 0;
    for c in 0..CONNECTIONS {
        let prefix = format!("C{c}-");
        let next = acked_c
            .iter()
            .filter_map(|id| id.strip_prefix(&prefix)?.parse::<usize>().ok())
            .max()
            .map_or(0, |i| i + 1);
        let mut p = Partner::connect(hubs[0].mllp);
        for i in next..(next + 2 * IN_FLIGHT).min(PER_CONNECTION) {
            let id = format!("{prefix}{i}");
            let ack = p.send(with_control_id(&base, &id).as_bytes());
            assert_eq!(ack.code(), "AA", "{id} resent to hub-a: {ack:?}");
            resent_dups += usize::from(ack_text(&ack).contains("duplicate of message"));
            acked.push(id);
        }
    }
    let sent = started.elapsed();

    // The duplicates: both AA, the same ACK (MSH-10 names the one stored
    // row), exactly one of them the original.
    let rows: HashMap<String, (i64, i64)> = db
        .query(
            "SELECT message_id, count(*), min(id) FROM messages \
             WHERE message_id LIKE 'DUP-%' GROUP BY message_id",
        )
        .into_iter()
        .map(|r| (r[0].clone(), (r[1].parse().unwrap(), r[2].parse().unwrap())))
        .collect();
    for (id, a, b) in &dups {
        assert_eq!(
            (a.code(), b.code()),
            ("AA".into(), "AA".into()),
            "{id}: {a:?} / {b:?}"
        );
        assert_eq!((a.acked_id(), b.acked_id()), (id.clone(), id.clone()));
        let (count, row) = rows.get(id).copied().unwrap_or_default();
        assert_eq!(count, 1, "{id}: one messages row, not {count}");
        assert_eq!(ack_control_id(a), format!("CGT{row}"), "{id}: {a:?}");
        assert_eq!(ack_control_id(b), format!("CGT{row}"), "{id}: {b:?}");
        let repeats = [a, b]
            .iter()
            .filter(|x| ack_text(x).contains(&format!("duplicate of message {row}")))
            .count();
        assert_eq!(repeats, 1, "{id}: one original, one repeat: {a:?} / {b:?}");
        acked.push(id.clone());
    }

    // No MSH-10 stored twice, whichever instance took it.
    let twice = db
        .query("SELECT message_id, count(*) FROM messages GROUP BY message_id HAVING count(*) > 1");
    assert!(twice.is_empty(), "messages stored twice: {twice:?}");

    // The shared outbox drains: hub-c's claims run out and the others take
    // them. Any one instance's /healthz shows the shared outbox.
    hubs[0].wait_delivered();
    let drained = started.elapsed();
    for (h, id) in hubs[..2].iter().zip(["hub-a", "hub-b"]) {
        let health = h.get_json("/healthz");
        assert_eq!(health["status"], "ok", "{health}");
        assert_eq!(health["instance"], id, "{health}");
        assert_eq!(health["outbox_pending"], 0, "{health}");
        assert_eq!(health["outbox_claimed"], 0, "{health}");
        let (status, metrics) = http_get(h.http, "/metrics").expect("GET /metrics");
        assert_eq!(status, 200);
        for line in [
            format!("cgthub_instance{{instance=\"{id}\",store=\"postgres\"}} 1"),
            "cgthub_outbox_pending 0".to_string(),
            "cgthub_outbox_claimed 0".to_string(),
        ] {
            assert!(
                metrics.lines().any(|l| l == line),
                "{id} /metrics has {line:?}:\n{metrics}"
            );
        }
    }
    let delivered = assert_delivered_once(&db);

    // Every AA'd message is stored, with its events delivered.
    let events = events_by_message(&db);
    let mut want: HashSet<String> = HashSet::new();
    for id in &acked {
        let evs = events
            .get(id)
            .unwrap_or_else(|| panic!("{id} got AA but is not in the store"));
        for e in evs {
            assert!(delivered.contains(e), "{id}: event {e} not delivered");
            want.insert(e.clone());
        }
    }

    // And every one reached RabbitMQ, under its event id.
    let got = drain_ids(&mut v, QUEUE, &want, Duration::from_secs(30));
    let n = arrivals(&got);
    let lost: Vec<&String> = want.iter().filter(|e| !n.contains_key(*e)).collect();
    assert!(
        lost.is_empty(),
        "{} event(s) delivered in the store never reached RabbitMQ; their outbox rows:\n{}\n\
         left in {QUEUE}: {:?}; dead letters: {:?}",
        lost.len(),
        lost.iter()
            .take(5)
            .map(|e| outbox_row(&db, e, &hubs))
            .collect::<Vec<_>>()
            .join("\n"),
        v.queue_len(QUEUE),
        db.query("SELECT stage, code, count(*) FROM dead_letters GROUP BY 1, 2"),
    );
    assert_all_arrived(&acked, &got);
    let stored: HashSet<String> = events.values().flatten().cloned().collect();
    let strangers: Vec<&String> = n.keys().filter(|e| !stored.contains(*e)).collect();
    assert!(
        strangers.is_empty(),
        "unknown event ids published: {strangers:?}"
    );

    let owners =
        db.query("SELECT coalesce(lease_owner, '-'), count(*) FROM outbox GROUP BY 1 ORDER BY 1");
    eprintln!(
        "3 hubs up in {:.1} s; {} AA'd ({} by hub-c before its kill; of its partners' \
         resent messages {resent_dups} it had stored), {} stored messages, \
         {} events; all sent at {:.1} s, outbox empty at {:.1} s; RabbitMQ: {} messages, \
         {} repeats (same message_id, allowed); outbox rows by last claimant: {owners:?}",
        up.as_secs_f64(),
        acked.len(),
        acked_c.len(),
        db.count("SELECT count(*) FROM messages"),
        stored.len(),
        sent.as_secs_f64(),
        drained.as_secs_f64(),
        got.len(),
        got.len() - n.len(),
    );
}

#[test]
fn rows_claimed_by_a_killed_hub_are_published_by_another_after_its_lease() {
    const MESSAGES: usize = 30;
    let started = Instant::now();
    let db = Database::new();
    let mut v = Vhost::new();
    // hub-c reaches the broker through a link the test can hang: it claims
    // rows and publishes them, but no confirm ever comes back.
    let link = Proxy::start(BROKER);
    let mut c = start(&db, &v.url_via(link.addr), &["hub-c"])
        .pop()
        .expect("hub-c");
    c.wait_for("hub-c connected to the broker", || {
        c.get_json("/healthz")["status"] == "ok"
    });
    link.freeze();
    std::thread::sleep(Duration::from_millis(200));

    // One burst, pipelined, so that hub-c's relay claims a batch of rows at
    // once; it publishes them into the hung link and waits for confirms
    // (one batch at a time: later rows stay unclaimed).
    let base = String::from_utf8(fixture(MESSAGE)).expect("UTF-8 fixture");
    let mut p = Partner::connect(c.mllp);
    let ids: Vec<String> = (0..MESSAGES).map(|i| format!("L{i}")).collect();
    let burst: Vec<u8> = ids
        .iter()
        .flat_map(|id| Partner::frame(with_control_id(&base, id).as_bytes()))
        .collect();
    p.send_raw(&burst);
    for id in &ids {
        let ack = p.read_ack().expect("an ACK");
        assert_eq!(
            (ack.code(), ack.acked_id()),
            ("AA".into(), id.clone()),
            "{ack:?}"
        );
    }
    let claimed_sql = "SELECT id, lease_until FROM outbox \
                       WHERE state = 'pending' AND lease_owner = 'hub-c' ORDER BY id";
    c.wait_for("hub-c to claim rows", || !db.query(claimed_sql).is_empty());
    std::thread::sleep(Duration::from_millis(300));
    let claimed: Vec<(String, String)> = db
        .query(claimed_sql)
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    // hub-c's own view of them.
    let health = c.get_json("/healthz");
    assert_eq!(health["instance"], "hub-c", "{health}");
    assert_eq!(health["outbox_claimed"], claimed.len(), "{health}");
    // How long the earliest of those leases still runs, by the store's clock.
    let lease_left_ms = db.count(
        "SELECT (extract(epoch FROM min(lease_until)::timestamptz - clock_timestamp()) \
         * 1000)::bigint FROM outbox WHERE state = 'pending' AND lease_owner = 'hub-c'",
    );
    let lease_ends = Instant::now() + Duration::from_millis(lease_left_ms.max(0) as u64);
    c.kill();
    let killed = Instant::now();

    let others = start(&db, &v.url(), &["hub-a", "hub-b"]);
    // While the lease runs, the rows stay hub-c's, though two live
    // instances look for work.
    let (mut held, mut early) = (0, 0);
    while Instant::now() + Duration::from_millis(300) < lease_ends {
        let still = db
            .count("SELECT count(*) FROM outbox WHERE state = 'pending' AND lease_owner = 'hub-c'");
        assert_eq!(
            still,
            claimed.len() as i64,
            "hub-c's rows were taken while its lease ran"
        );
        for h in &others {
            let health = h.get_json("/healthz");
            let theirs = health["outbox_claimed"].as_u64().unwrap_or(u64::MAX);
            assert!(
                theirs <= (MESSAGES - claimed.len()) as u64,
                "a live instance claims hub-c's rows: {health}"
            );
        }
        held += 1;
        early = db.count("SELECT count(*) FROM outbox WHERE state = 'delivered'");
        std::thread::sleep(Duration::from_millis(100));
    }
    others[0].wait_delivered();
    let delivered_after = killed.elapsed();

    // Each was delivered once, by another instance, not before its lease
    // (as hub-c last set it) ran out. Times are the store's fixed-width UTC
    // text, so text order is time order.
    let delivered = assert_delivered_once(&db);
    assert_eq!(delivered.len(), MESSAGES);
    for (id, lease_until) in &claimed {
        let r = db.query(&format!(
            "SELECT delivered_at, coalesce(lease_owner, '') FROM outbox WHERE id = {id}"
        ));
        let (delivered_at, owner) = (&r[0][0], &r[0][1]);
        assert!(
            delivered_at.as_str() >= lease_until.as_str(),
            "row {id} delivered at {delivered_at}, before hub-c's lease ran out at {lease_until}"
        );
        assert_ne!(owner, "hub-c", "row {id} delivered by the dead hub-c?");
    }

    // hub-c never got a byte through: RabbitMQ has each event exactly once.
    let got = drain_ids(&mut v, QUEUE, &delivered, Duration::from_secs(30));
    let n = arrivals(&got);
    assert_eq!(
        n.keys().cloned().collect::<HashSet<_>>(),
        delivered,
        "RabbitMQ has the delivered events"
    );
    assert!(n.values().all(|&k| k == 1), "each event once: {n:?}");
    let more = v.take(QUEUE, 1, Duration::from_secs(1));
    assert!(more.is_empty(), "published again: {more:?}");
    assert_all_arrived(&ids, &got);
    eprintln!(
        "{MESSAGES} rows, {} claimed by hub-c; still its own for {held} looks after its kill, \
         while {early} others were delivered; outbox empty {:.1} s after the kill (lease {LEASE_MS} ms); test {:.1} s",
        claimed.len(),
        delivered_after.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    drop(link);
}
