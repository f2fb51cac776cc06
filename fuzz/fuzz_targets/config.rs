//! The configuration file checker: any text is accepted or refused with an
//! error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = herald::config::file::check_text(text);
});
