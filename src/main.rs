//! The command line: parse, set up logging, hand over to the library. Exit status 0 on success, 1 for a
//! run-time failure, 2 for a usage mistake.

use std::io::Write;
use std::process::ExitCode;
use tapstack::client::Input;
use tapstack::commands::{self, DemoMode};
use tapstack::config::{Cli, Command, DemoArgs, ServeConfig};
use tapstack::reactor::RunError;

fn init_logging(quiet: bool) {
    let mut b = env_logger::Builder::new();
    b.filter_level(log::LevelFilter::Info);
    // smoltcp's own debug chatter stays out unless asked for.
    b.filter_module("smoltcp", log::LevelFilter::Warn);
    if quiet {
        b.filter_module("tapstack::packet", log::LevelFilter::Warn);
    }
    if let Ok(spec) = std::env::var("RUST_LOG") {
        b.parse_filters(&spec);
    }
    b.write_style(env_logger::WriteStyle::Never);
    b.target(env_logger::Target::Pipe(Box::new(
        tapstack::logbuf::Buffered,
    )));
    b.format(|f, r| {
        let target = r.target().strip_prefix("tapstack::").unwrap_or(r.target());
        writeln!(f, "{:<5} {:<7} {}", r.level(), target, r.args())
    });
    b.init();
}

fn main() -> ExitCode {
    let cli = Cli::parse_checked();
    init_logging(cli.quiet);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tapstack::logbuf::flush();
        default_hook(info);
    }));
    let code = run(&cli);
    tapstack::logbuf::flush();
    code
}

fn run(cli: &Cli) -> ExitCode {
    let result = match &cli.command {
        Some(Command::Serve(args)) => match args.validate() {
            Err(e) => return usage(&e.to_string()),
            Ok(mut cfg) => {
                tune(&mut cfg, cli);
                commands::serve(&cfg).map(|_| ())
            }
        },
        Some(Command::Connect(args)) => match args.validate() {
            Err(e) => return usage(&e.to_string()),
            Ok((mut cfg, target)) => {
                tune(&mut cfg, cli);
                let input = match &args.send {
                    Some(t) => Input::Fixed(t.clone().into_bytes()),
                    None => Input::Stdin,
                };
                commands::connect(&cfg, target, args.udp, input).map(|_| ())
            }
        },
        Some(Command::Get(args)) => match args.validate() {
            Err(e) => return usage(&e.to_string()),
            Ok(mut cfg) => {
                tune(&mut cfg, cli);
                if let Err(e) = tapstack::client::parse_url(&args.url) {
                    return usage(&e.to_string());
                }
                commands::get(&cfg, &args.url).map(|_| ())
            }
        },
        Some(Command::Demo(args)) => run_demo(args, cli),
        Some(Command::Explain { what }) => match tapstack::trace::explain(what) {
            Ok(text) => {
                println!("{}", text.trim_end());
                Ok(())
            }
            Err(e) => return usage(&e.to_string()),
        },
        None => run_demo(&cli.demo, cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tapstack::logbuf::flush();
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Applies the global flags.
fn tune(cfg: &mut ServeConfig, cli: &Cli) {
    cfg.trace.quiet = cli.quiet;
    cfg.trace.absolute_seq = cli.verbose;
}

fn run_demo(args: &DemoArgs, cli: &Cli) -> Result<(), RunError> {
    let mut cfg = match args.validate() {
        Ok(c) => c,
        Err(e) => {
            tapstack::logbuf::flush();
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    tune(&mut cfg, cli);
    let mode = if let Some(t) = &args.connect {
        let input = match &args.send {
            Some(t) => Input::Fixed(t.clone().into_bytes()),
            None => Input::Stdin,
        };
        // validate() checked the target.
        let target = tapstack::config::parse_target(t).map_err(|e| RunError::App(e.to_string()))?;
        DemoMode::Connect {
            target,
            udp: args.udp,
            input,
        }
    } else if let Some(u) = &args.get {
        if let Err(e) = tapstack::client::parse_url(u) {
            tapstack::logbuf::flush();
            eprintln!("error: {e}");
            std::process::exit(2);
        }
        DemoMode::Get(u.clone())
    } else {
        DemoMode::Tour
    };
    commands::demo(&cfg, mode, args.exit).map(|_| ())
}

fn usage(msg: &str) -> ExitCode {
    tapstack::logbuf::flush();
    eprintln!("error: {msg}");
    ExitCode::from(2)
}
