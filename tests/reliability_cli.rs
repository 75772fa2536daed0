//! The binary's command line under misuse: every bad invocation is one clear line on stderr and exit
//! code 2, never a panic. No root, no network.

mod common;

use common::*;
use std::process::{Command, Stdio};

// ---------------------------------------------------------------------------------------------
// 10. Bad configuration: one clear line, exit 2.

/// Misuse caught by tapstack's own validation.
const CLI_VALIDATION_CASES: &[&[&str]] = &[
    &["serve", "--max-connections", "0"],
    &["serve", "--max-connections", "99999999"],
    &["serve", "--idle-timeout", "0"],
    &["serve", "--idle-timeout", "nan"],
    &["serve", "--drop-chance", "1"],
    &["serve", "--drop-chance", "1.5"],
    &["serve", "--corrupt-chance", "inf"],
    &["serve", "--reorder-chance", "2"],
    &["serve", "--stats-interval", "0"],
    &["serve", "--addr", "300.1.1.1/24"],
    &["serve", "--addr", "192.168.69.1"],
    &["serve", "--addr", "224.0.0.1/4"],
    &["serve", "--addr", "0.0.0.0/0"],
    &[
        "serve",
        "--addr",
        "1.1.1.1/24",
        "--addr",
        "2.2.2.2/24",
        "--addr",
        "3.3.3.3/24",
        "--addr",
        "4.4.4.4/24",
    ],
    &["serve", "--gateway", "not-an-ip"],
    &["serve", "--gateway", "1.1.1.1", "--gateway", "2.2.2.2"],
    &["serve", "--mac", "ff:ff:ff:ff:ff:ff"],
    &["serve", "--mac", "00:00:00:00:00:00"],
    &["serve", "--mac", "02:00:00:00:00"],
    &["serve", "--mac", "zz:00:00:00:00:01"],
    &["serve", "--serve", ""],
    &["serve", "--serve", ",,"],
    &["serve", "--serve", "echo:0"],
    &["serve", "--serve", "echo:"],
    &["serve", "--serve", "http:-80"],
    &["serve", "--serve", "echo:7,chargen:7"],
    &["serve", "--host", "localhost"],
    &["serve", "--host-port-offset", "70000"],
    &["serve", "--host-port-offset", "65530"],
    &["connect", "nowhere"],
    &["connect", "192.168.69.100:0"],
    &["connect", "192.168.69.100"],
    &["get", "ftp://192.168.69.1/"],
    &["get", "http://example.com/"],
    &["explain", "999.1.1.1"],
];

/// Misuse caught by clap's parser (unknown flags, non-numbers, negative numbers taken for flags).
const CLI_PARSE_CASES: &[&[&str]] = &[
    &["serve", "--max-connections", "-1"],
    &["serve", "--max-connections", "lots"],
    &["serve", "--idle-timeout", "-3"],
    &["serve", "--dup-chance", "-0.1"],
    &["serve", "--latency-ms", "-5"],
    &["serve", "--seed", "banana"],
    &["serve", "--narrate-limit", "-1"],
    &["serve", "--narrate-limit", "few"],
    &["serve", "--bogus-flag"],
    &["serve", "extra-positional"],
    &["frobnicate"],
];

#[test]
fn cli_misuse_is_one_line_exit_2() {
    let long = "q".repeat(513);
    let message: &[&str] = &["serve", "--message", &long];
    let mut cases: Vec<&[&str]> = CLI_VALIDATION_CASES.to_vec();
    cases.push(message);
    cli_cases(&cases);
}

#[test]
fn cli_parse_errors_are_one_line_exit_2() {
    cli_cases(CLI_PARSE_CASES);
}

fn cli_cases(cases: &[&[&str]]) {
    let mut bad = Vec::new();
    for args in cases {
        let out = Command::new(tapstack_bin())
            .args(*args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let lines = err.trim().lines().count();
        if out.status.code() != Some(2)
            || lines != 1
            || !err.starts_with("error")
            || err.contains("panicked")
        {
            bad.push(format!(
                "{args:?}: exit {:?}, {lines} lines: {}",
                out.status.code(),
                err.trim()
            ));
        }
    }
    eprintln!(
        "FIGURE cli: {} misuse cases, {} not one line + exit 2",
        cases.len(),
        bad.len()
    );
    assert!(bad.is_empty(), "{bad:#?}");
}
