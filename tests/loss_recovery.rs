//! Loss recovery of our smoltcp (issue 15, PATCHES.md), end to end on the harness's virtual wire:
//! a 1 MiB echo (1 MiB each way, both stacks are ours) under seeded loss, timed in virtual time.
//! Each case runs several seeds and takes the median, so one lucky or unlucky seed decides nothing.
//!
//! The bounds failed before the patches of PATCHES.md (3-10): the 20% case needed 1,217 s of
//! virtual time (median of these seeds; 1 s minimum RTO, go-back-N, SACK ignored) and must now be
//! at least 10 x shorter (issue 15's target, from its 1,136 s). With congestion control on and
//! smoltcp's recovery as published, 1% loss took 5.4 s and 5% 48 s (without congestion control
//! 0.31 s and 8.7 s: a sender that ignores loss is fast on a wire that only drops at random).
//! `FIGURE` lines on stderr (`--nocapture`) give the numbers PATCHES.md quotes.

use std::time::Duration;
use tapstack::harness::Harness;
use tapstack::{Direction, ServiceKind};

const MIB: usize = 1 << 20;

/// A byte pattern that differs per seed, so a misplaced segment cannot echo back unnoticed.
fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Virtual time of one byte-exact 1 MiB echo under `loss` with `latency` each way, and the
/// retransmissions the server's trace saw.
fn echo_time(seed: u64, loss: f64, latency: Duration) -> (Duration, usize) {
    let mut b = Harness::builder()
        .serve(ServiceKind::Echo, 7)
        .seed(seed)
        .drop_chance(loss);
    if !latency.is_zero() {
        b = b.latency(latency);
    }
    let mut h = b.build();
    let data = pattern(MIB, seed);
    let got = h
        .echo(7, &data, Duration::from_secs(6 * 3600))
        .unwrap_or_else(|e| panic!("seed {seed}, loss {loss}: {e}"));
    assert!(got == data, "seed {seed}, loss {loss}: echo differs");
    if loss > 0.0 {
        assert!(h.dropped(Direction::In) + h.dropped(Direction::Out) > 0);
        assert!(h.retransmissions() > 0, "loss must show as retransmissions");
    }
    (h.now(), h.retransmissions())
}

/// Median virtual time over `seeds`, printed as a FIGURE line with the goodput it means.
fn median_time(name: &str, seeds: &[u64], loss: f64, latency: Duration) -> Duration {
    let runs: Vec<(Duration, usize)> = seeds.iter().map(|&s| echo_time(s, loss, latency)).collect();
    let mut times: Vec<Duration> = runs.iter().map(|r| r.0).collect();
    times.sort();
    let mut rexmits: Vec<usize> = runs.iter().map(|r| r.1).collect();
    rexmits.sort();
    let median = times[times.len() / 2];
    let mbit = (MIB * 8) as f64 / median.as_secs_f64() / 1e6;
    eprintln!(
        "FIGURE loss_recovery {name}: median {:.2} s of virtual time for a 1 MiB echo \
         ({mbit:.2} Mbit/s each way), median {} retransmissions; all seeds (ms) {:?}",
        median.as_secs_f64(),
        rexmits[rexmits.len() / 2],
        times.iter().map(|t| t.as_millis()).collect::<Vec<_>>()
    );
    median
}

#[test]
fn loss_20_percent_no_latency_ten_times_faster_than_before() {
    // Seed 3 is the harness's own case (1,136 s in the issue, 1,244 s before these patches).
    // Now 80 s (112 s before the initial window of patch 10); the target is 10 x. Seed 3 alone
    // is the slow one: 874 s, as a run of losses near the end (every retransmission or its ACK
    // lost, 4 and 5 times in a row) backs the RTO off to 60 s while going back after a timeout,
    // where no ACK covers data sent only once and Karn's rule allows no RTT sample (Linux gets
    // one from the timestamp option). Seeds 1, 2, 4, 5: 90, 41, 47, 80 s.
    let t = median_time(
        "20% loss, no latency",
        &[1, 2, 3, 4, 5],
        0.2,
        Duration::ZERO,
    );
    assert!(
        t <= Duration::from_secs(113),
        "20% loss: {t:?}, the target is 10 x shorter than 1,136 s"
    );
}

#[test]
fn loss_5_percent_5ms() {
    // 8.7 s before (48 s with congestion control and no other patch), 5.3 s now.
    let t = median_time(
        "5% loss, 5 ms each way",
        &[1, 2, 3],
        0.05,
        Duration::from_millis(5),
    );
    assert!(t <= Duration::from_secs(8), "5% loss: {t:?}");
}

#[test]
fn loss_1_percent_5ms() {
    // 5.4 s with congestion control before the recovery patches, 2.4 s with the 200 ms RTO
    // alone, 1.8 s now.
    let t = median_time(
        "1% loss, 5 ms each way",
        &[1, 2, 3],
        0.01,
        Duration::from_millis(5),
    );
    assert!(t <= Duration::from_secs(2), "1% loss: {t:?}");
}

#[test]
fn no_loss_5ms() {
    // 0.33 s: slow start from CUBIC's initial window of 10 segments (0.41 s from 2 segments,
    // 0.22 s without congestion control).
    let t = median_time(
        "no loss, 5 ms each way",
        &[1],
        0.0,
        Duration::from_millis(5),
    );
    assert!(t <= Duration::from_secs(1), "no loss: {t:?}");
}
