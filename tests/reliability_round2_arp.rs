//! Reliability, round 2 (issue 14), case 9: ARP poisoning is told. One unsolicited ARP reply from
//! another MAC for the client's address used to move the server's neighbour entry without a word;
//! now the stack counts the move and tells it (`StackEvent::NeighbourMoved`), and the tracer logs a
//! `tapstack::arp` warning and emits a `neighbour_moved` event. smoltcp still follows the packet.
//!
//! Every figure printed here (`FIGURE ...` lines on stderr, `--nocapture` to see them) is in
//! RELIABILITY.md, "Round 2", "ARP".

use std::time::Duration;
use tapstack::frames::{Arp, Eth, CLIENT_MAC, CLIENT_V4, SERVER_MAC, SERVER_V4};
use tapstack::harness::{Harness, Side};
use tapstack::trace::{EventsTarget, TraceConfig};
use tapstack::ServiceKind;

/// The MAC of the host that answers for the client's address.
const FORGED_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x66];

/// The `neighbour_moved` events in the events file so far.
fn moves_in(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("an events line is JSON"))
        .filter(|e| e["event"] == "neighbour_moved")
        .collect()
}

#[test]
fn a_forged_arp_reply_for_the_client_is_told_once_and_a_repeated_true_one_never() {
    let events = std::env::temp_dir().join(format!(
        "tapstack-reliability-arp-{}.jsonl",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&events);
    let trace = TraceConfig {
        events: Some(EventsTarget::File(events.clone())),
        ..TraceConfig::silent()
    };
    let mut h = Harness::builder()
        .serve(ServiceKind::Echo, 7)
        .trace(trace)
        .build();
    let limit = Duration::from_secs(60);
    assert_eq!(h.echo(7, b"before", limit).expect("echo"), b"before");

    // The client's true MAC, again and again: nothing moved.
    let truth = Eth::to_server().arp(&Arp::reply(CLIENT_MAC, CLIENT_V4, SERVER_MAC, SERVER_V4));
    for _ in 0..3 {
        h.inject(Side::Server, &truth);
        h.run_for(Duration::from_millis(10));
    }
    assert_eq!(h.neighbour_moves(), 0, "the same MAC again is not a move");
    assert!(moves_in(&events).is_empty());

    // Another host says it is the client.
    let forged = Eth::new(FORGED_MAC, SERVER_MAC)
        .arp(&Arp::reply(FORGED_MAC, CLIENT_V4, SERVER_MAC, SERVER_V4));
    h.inject(Side::Server, &forged);
    h.run_for(Duration::from_millis(10));
    assert_eq!(h.neighbour_moves(), 1, "the move is counted");
    assert_eq!(h.counters().neighbours_moved, 1);
    let moves = moves_in(&events);
    assert_eq!(moves.len(), 1, "one neighbour_moved event: {moves:?}");
    assert_eq!(moves[0]["ip"], "192.168.69.100");
    assert_eq!(moves[0]["from"], "02:00:00:00:00:02");
    assert_eq!(moves[0]["to"], "02:00:00:00:00:66");
    assert!(moves[0]["t_us"].is_i64());

    // The same forged reply again: the neighbour is where the last reply said; no second move.
    h.inject(Side::Server, &forged);
    h.run_for(Duration::from_millis(10));
    assert_eq!(
        h.neighbour_moves(),
        1,
        "an identical forged reply does not count again"
    );
    assert_eq!(moves_in(&events).len(), 1);
    // No drop was counted for it: the frame was processed (smoltcp follows ARP, that is the protocol).
    assert_eq!(h.counters().drops_total(), 0, "{:?}", h.counters().drops);

    // And the true host answering again is a move back, told as such.
    h.inject(Side::Server, &truth);
    h.run_for(Duration::from_millis(10));
    assert_eq!(h.neighbour_moves(), 2, "moving back is a move too");
    let moves = moves_in(&events);
    assert_eq!(moves.len(), 2);
    assert_eq!(
        (moves[1]["from"].as_str(), moves[1]["to"].as_str()),
        (Some("02:00:00:00:00:66"), Some("02:00:00:00:00:02"))
    );
    assert_eq!(h.echo(7, b"after", limit).expect("echo after"), b"after");
    eprintln!(
        "FIGURE arp: legit repeated reply x3 -> 0 moves; forged reply -> 1 move (counter 1, 1 neighbour_moved event); \
         same forged reply again -> still 1; true reply after it -> 2"
    );
    let _ = std::fs::remove_file(&events);
}
