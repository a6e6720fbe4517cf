//! The `keymint` binary: parses the command line and hands over to
//! [`keymint::cli`].

fn main() -> std::process::ExitCode {
    keymint::cli::main()
}
