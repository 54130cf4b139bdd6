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
                // Help on a command that sends no request leaves out the options about requests.
                let args: Vec<String> = std::env::args().collect();
                let command = classkeys::cli::named_command(&args);
                if err.kind() == clap::error::ErrorKind::DisplayHelp && command.is_some() {
                    let text = err.render().to_string();
                    let shown = classkeys::cli::help_for(&text, command.as_deref());
                    if shown != text {
                        use std::io::Write;
                        let _ = std::io::stdout().write_all(shown.as_bytes());
                        return ExitCode::from(0);
                    }
                }
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
