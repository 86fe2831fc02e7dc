use super::*;

/// Readings of logger L1, one a minute from minute 0.
fn series(values: &[f64]) -> Vec<TherapyEvent> {
    values
        .iter()
        .enumerate()
        .map(|(m, &c)| reading("L1", m as i64, c))
        .collect()
}

const OPENED_08_00: &str = "excursion:L1:2026-11-21T08:00:00Z:opened";
const CLOSED_08_00: &str = "excursion:L1:2026-11-21T08:00:00Z:closed";

#[test]
fn in_range_readings_raise_nothing() {
    let mut m = monitor();
    let values: Vec<f64> = (0..120).map(|i| 2.0 + (i % 61) as f64 / 10.0).collect();
    assert!(
        feed(&mut m, &series(&values)).is_empty(),
        "2.0 to 8.0, limits included"
    );
}

#[test]
fn a_spike_beyond_tolerance_opens_at_once() {
    let mut m = monitor();
    let events = series(&[5.0, 5.0, 5.0, 5.0, 5.0, 9.0]);
    let out = feed(&mut m, &events);
    assert_eq!(
        keys(&out),
        [
            "excursion:L1:2026-11-21T08:05:00Z:opened",
            "excursion:L1:2026-11-21T08:05:00Z:opened:alert"
        ]
    );
    let x = excursion(&out[0]);
    assert_eq!(x.logger_id, "L1");
    assert_eq!(x.tracking_number.as_deref(), Some("TN-L1"));
    assert_eq!(x.profile.as_deref(), Some("fresh_apheresis"));
    assert_eq!(
        (x.limit_low_celsius, x.limit_high_celsius),
        (Some(2.0), Some(8.0))
    );
    assert_eq!(x.peak_celsius, 9.0);
    assert_eq!(x.started_at, min(5));
    assert_eq!(x.ended_at, None);
    assert_eq!(x.duration_seconds, Some(0));
    assert_eq!(out[0].occurred_at, min(5));
    assert_eq!(out[0].coi.as_deref(), Some(COI));
    assert_eq!(out[0].product.as_deref(), Some("CART-1"));
    let a = alert(&out[1]);
    assert_eq!(a.alert, "temperature_excursion");
    assert_eq!(a.severity, "high");
    assert_eq!(a.tracking_number.as_deref(), Some("TN-L1"));
    assert_eq!(a.related_event_id, Some(events[5].event_id.to_string()));
    assert_eq!(
        a.message,
        "temperature excursion on logger L1 (shipment TN-L1) since 2026-11-21T08:05:00Z: \
         9 °C, outside 2 to 8 °C (profile fresh_apheresis)"
    );
}

#[test]
fn a_small_drift_opens_only_after_tolerance_minutes() {
    let mut m = monitor();
    for (i, ev) in series(&[8.3; 13]).iter().enumerate() {
        let out = m.observe(ev);
        if i == 10 {
            assert_eq!(
                keys(&out),
                [
                    OPENED_08_00,
                    "excursion:L1:2026-11-21T08:00:00Z:opened:alert"
                ]
            );
            assert_eq!(excursion(&out[0]).duration_seconds, Some(600));
            assert_eq!(alert(&out[1]).severity, "warning", "a drift, not a spike");
        } else {
            assert!(out.is_empty(), "minute {i}: {:?}", keys(&out));
        }
    }
}

#[test]
fn closing_reports_duration_and_peak() {
    let mut m = monitor();
    let mut values = vec![8.3, 8.4, 8.45, 8.2, 8.4, 8.3, 8.1, 8.2, 8.3, 8.4, 8.4, 8.3];
    values.extend([8.2, 8.1, 8.3, 7.0, 6.0]);
    let events = series(&values);
    let out = feed(&mut m, &events);
    assert_eq!(
        keys(&out),
        [
            OPENED_08_00,
            "excursion:L1:2026-11-21T08:00:00Z:opened:alert",
            CLOSED_08_00,
            "excursion:L1:2026-11-21T08:00:00Z:closed:alert"
        ]
    );
    let x = excursion(&out[2]);
    assert_eq!(x.started_at, min(0));
    assert_eq!(x.ended_at, Some(min(15)));
    assert_eq!(x.duration_seconds, Some(900));
    assert_eq!(x.peak_celsius, 8.45);
    assert_eq!(out[2].occurred_at, min(15));
    let a = alert(&out[3]);
    assert_eq!(a.related_event_id, Some(events[15].event_id.to_string()));
    assert_eq!(
        a.message,
        "temperature excursion on logger L1 (shipment TN-L1) ended at 2026-11-21T08:15:00Z \
         after 15 min; peak 8.45 °C, outside 2 to 8 °C (profile fresh_apheresis)"
    );
}

#[test]
fn the_peak_below_the_range_is_the_lowest() {
    let mut m = monitor();
    let out = feed(&mut m, &series(&[5.0, 1.2, 0.9, 1.4, 5.0]));
    let closed = excursion(&out[2]);
    assert_eq!(closed.peak_celsius, 0.9);
    assert_eq!(closed.started_at, min(1));
    assert_eq!(closed.ended_at, Some(min(4)));
}

/// Two excursions (a drift and a spike) among in-range readings.
fn two_excursions() -> Vec<TherapyEvent> {
    let mut v = vec![5.0; 6];
    v.extend([8.3, 8.4, 8.2, 8.3, 8.4, 8.5, 8.3, 8.2, 8.4, 8.3, 8.3, 8.2]); // 6..=17, drift
    v.extend([5.0; 8]); // 18..=25
    v.extend([9.0, 8.4, 9.6, 8.3]); // 26..=29, spike
    v.extend([4.0; 10]); // 30..=39
    series(&v)
}

fn excursions_of(out: &[Raised]) -> (Vec<&str>, Vec<&TemperatureExcursion>) {
    let mut k = keys(out);
    k.sort_unstable();
    let mut closed: Vec<&TemperatureExcursion> = out
        .iter()
        .filter(|r| r.key.ends_with(":closed"))
        .map(excursion)
        .collect();
    closed.sort_by_key(|x| x.started_at);
    (k, closed)
}

#[test]
fn out_of_order_readings_give_the_same_excursions_as_in_order() {
    let events = two_excursions();
    let in_order = feed(&mut monitor(), &events);
    let (k, closed) = excursions_of(&in_order);
    assert_eq!(k.len(), 8);
    assert_eq!(closed.len(), 2);
    assert_eq!(
        (closed[0].started_at, closed[0].ended_at),
        (min(6), Some(min(18)))
    );
    assert_eq!(
        (closed[0].peak_celsius, closed[0].duration_seconds),
        (8.5, Some(720))
    );
    assert_eq!(
        (closed[1].started_at, closed[1].ended_at),
        (min(26), Some(min(30)))
    );
    assert_eq!(closed[1].peak_celsius, 9.6);

    // Each stretch (in range, or a run) arrives with its first reading
    // first and the rest backwards.
    let bounds = [0, 6, 18, 26, 30, 40];
    let mut jumbled = Vec::new();
    for w in bounds.windows(2) {
        jumbled.push(&events[w[0]]);
        jumbled.extend(events[w[0] + 1..w[1]].iter().rev());
    }
    let out = feed(&mut monitor(), jumbled);
    assert_eq!(excursions_of(&out), (k.clone(), closed.clone()));

    // A buffered upload: the readings up to the drift's end arrive after
    // the rest. (A run is closed by the next reading known when it
    // qualifies, so the gap must end at the reading that closes it.)
    let out = feed(&mut monitor(), events[18..].iter().chain(&events[..18]));
    assert_eq!(excursions_of(&out), (k, closed));
}

#[test]
fn repeated_readings_raise_nothing_new() {
    let mut m = monitor();
    let events = two_excursions();
    assert_eq!(feed(&mut m, &events).len(), 8);
    assert!(feed(&mut m, &events).is_empty(), "the same readings again");
    assert!(
        feed(&mut m, events.iter().rev()).is_empty(),
        "and backwards"
    );
    // Another value at an instant already read: kept only when worse, and
    // then it belongs to what was reported there.
    assert!(m.observe(&reading("L1", 20, 5.5)).is_empty());
    assert!(m.observe(&reading("L1", 10, 9.9)).is_empty());
}

#[test]
fn a_late_reading_inside_a_reported_run_does_not_reopen_it() {
    let mut m = monitor();
    let mut values = vec![8.3; 12];
    values[4] = 9.9; // minute 4 will arrive late
    values.push(5.0);
    let mut events = series(&values);
    let late = events.remove(4);
    let out = feed(&mut m, &events);
    assert_eq!(out.len(), 4, "opened at minute 10, closed at minute 12");
    assert!(
        m.observe(&late).is_empty(),
        "inside a closed excursion: nothing"
    );
    // A late reading just before a closed excursion joins it, silently.
    assert!(m.observe(&reading("L1", -1, 9.9)).is_empty());
}

#[test]
fn a_late_first_reading_is_absorbed_not_rekeyed() {
    // The spike reading arrives before the drift reading that started its
    // run: the excursion is reported from the spike, and stays keyed so.
    let mut m = monitor();
    let out = feed(
        &mut m,
        &[
            reading("L1", 1, 9.5),
            reading("L1", 0, 8.3),
            reading("L1", 2, 5.0),
        ],
    );
    let (k, closed) = excursions_of(&out);
    assert_eq!(k[0], "excursion:L1:2026-11-21T08:01:00Z:closed");
    assert_eq!(closed[0].ended_at, Some(min(2)));
}

#[test]
fn a_late_in_range_reading_splits_an_open_run() {
    let mut m = monitor();
    let mut events = series(&[8.3; 21]);
    events.remove(7);
    let out = feed(&mut m, &events);
    assert_eq!(keys(&out)[0], OPENED_08_00);
    // Minute 7 was in range after all: the open excursion ends there, and
    // minutes 8 to 20 are judged on their own (12 minutes: an excursion).
    let out = m.observe(&reading("L1", 7, 5.0));
    assert_eq!(
        keys(&out),
        [
            CLOSED_08_00,
            "excursion:L1:2026-11-21T08:00:00Z:closed:alert",
            "excursion:L1:2026-11-21T08:08:00Z:opened",
            "excursion:L1:2026-11-21T08:08:00Z:opened:alert"
        ]
    );
    assert_eq!(excursion(&out[0]).duration_seconds, Some(420));
    assert_eq!(excursion(&out[2]).duration_seconds, Some(720));
}

#[test]
fn cryopreserved_profile_via_the_shipment_container() {
    let mut m = monitor();
    assert!(m
        .observe(&shipment_created("TN-L1", "LN2 dry shipper", min(-30)))
        .is_empty());
    let mut values = vec![-190.0; 5];
    values.extend([-128.0, -190.0]); // a spike: 22 °C over the limit
    values.extend([-145.0; 16]); // 5 °C over, within tolerance, for 15 min
    values.push(-180.0);
    let out = feed(&mut m, &series(&values));
    assert_eq!(
        keys(&out),
        [
            "excursion:L1:2026-11-21T08:05:00Z:opened",
            "excursion:L1:2026-11-21T08:05:00Z:opened:alert",
            "excursion:L1:2026-11-21T08:05:00Z:closed",
            "excursion:L1:2026-11-21T08:05:00Z:closed:alert",
            "excursion:L1:2026-11-21T08:07:00Z:opened",
            "excursion:L1:2026-11-21T08:07:00Z:opened:alert",
            "excursion:L1:2026-11-21T08:07:00Z:closed",
            "excursion:L1:2026-11-21T08:07:00Z:closed:alert",
        ]
    );
    let x = excursion(&out[0]);
    assert_eq!(x.profile.as_deref(), Some("cryopreserved"));
    assert_eq!(
        (x.limit_low_celsius, x.limit_high_celsius),
        (None, Some(-150.0))
    );
    assert_eq!(alert(&out[5]).severity, "warning");
    assert_eq!(excursion(&out[4]).duration_seconds, Some(15 * 60));
}

#[test]
fn the_readings_own_profile_comes_first() {
    let mut m = monitor();
    let mut ev = reading("L1", 0, -190.0);
    let EventData::TemperatureReading(r) = &mut ev.data else {
        unreachable!()
    };
    r.profile = Some("cryopreserved".into());
    assert!(
        m.observe(&ev).is_empty(),
        "-190 °C is fine in a dry shipper"
    );

    let mut ev = reading("L2", 0, 12.0);
    let EventData::TemperatureReading(r) = &mut ev.data else {
        unreachable!()
    };
    r.profile = Some("ambient".into());
    let out = m.observe(&ev);
    let x = excursion(&out[0]);
    assert_eq!(x.profile.as_deref(), Some("fresh_apheresis"), "the default");
    assert!(
        alert(&out[1])
            .message
            .ends_with("; logger reported unknown profile \"ambient\"; judged by fresh_apheresis"),
        "{}",
        alert(&out[1]).message
    );
}

#[test]
fn readings_older_than_the_retained_history_are_not_judged() {
    let mut m = monitor();
    assert!(m.observe(&reading("L1", 49 * 60, 5.0)).is_empty());
    assert!(
        m.observe(&reading("L1", 0, 30.0)).is_empty(),
        "49 h behind the latest"
    );
    assert!(
        m.observe(&reading("L1", 47 * 60, f64::NAN)).is_empty(),
        "not a number"
    );
    let out = m.observe(&reading("L1", 48 * 60, 30.0));
    assert_eq!(
        out.len(),
        4,
        "within 48 h: opened, and closed by the reading after it"
    );
}
