//! Entry point: parse the command line, run it, and turn any failure into one
//! `classkeys: error: …` message on stderr and a documented exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    // A write past `ulimit -f` then fails with an error classkeys reports (naming the file),
    // instead of the process dying of SIGXFSZ without a word.
    // SAFETY: setting a signal's disposition to "ignore" at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    // `COMPLETE=bash classkeys` prints the dynamic completion script; with the shell's words it
    // answers completions (roster emails for --email) and exits.
    clap_complete::CompleteEnv::with_factory(|| {
        <classkeys::cli::Cli as clap::CommandFactory>::command()
    })
    .complete();
    let cli = match classkeys::cli::parse() {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help/version to stdout (exit 0); a usage error is ours to print, in
            // the one format every error has, and is exit 2 (bad usage).
            if !err.use_stderr() {
                let _ = err.print();
                return ExitCode::from(0);
            }
            let text = err.render().to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            eprint!("classkeys: error: {text}");
            return ExitCode::from(2);
        }
    };
    match classkeys::run(cli) {
        Ok(code) => code.into(),
        Err(err) => {
            classkeys::error::report(&err);
            classkeys::error::exit_code(&err).into()
        }
    }
}
