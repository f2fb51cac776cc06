//! The /ws protocol decoder: any frame text decodes or is an error frame.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    match herald::transport::protocol::decode(text) {
        Ok((_request, reference)) => {
            let answer = herald::transport::protocol::pong(&reference);
            assert!(serde_json::from_str::<serde_json::Value>(&answer).is_ok());
        }
        Err(error) => {
            let answer = herald::transport::protocol::error(
                &error.reference,
                serde_json::json!({"code": error.code}),
            );
            assert!(serde_json::from_str::<serde_json::Value>(&answer).is_ok());
        }
    }
});
