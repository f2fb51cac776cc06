//! The SSE encoder: whatever the data, a spec-following parser reads back the
//! same data (line endings normalised to \n) and nothing else.
#![no_main]
use libfuzzer_sys::fuzz_target;

/// The HTML event-stream parsing rules for one frame.
fn parse(frame: &str) -> (Option<String>, Option<String>, String) {
    let (mut id, mut event, mut data) = (None, None, String::new());
    let mut blank_seen = false;
    for line in frame.split('\n') {
        assert!(
            !blank_seen || line.is_empty(),
            "content after the blank line: {frame:?}"
        );
        if line.is_empty() {
            blank_seen = true;
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = Some(value.to_owned()),
            "event" => event = Some(value.to_owned()),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            other => panic!("unexpected field {other:?} in {frame:?}"),
        }
    }
    data.pop();
    (id, event, data)
}

fuzz_target!(|input: (bool, &str)| {
    let (with_event, data) = input;
    let event = with_event.then_some("update");
    let frame = herald::transport::sse::frame(Some("k-1"), event, data);
    let frame = std::str::from_utf8(&frame).expect("frames are UTF-8");
    assert!(frame.ends_with("\n\n"));
    let (id, parsed_event, parsed) = parse(&frame[..frame.len() - 1]);
    assert_eq!(id.as_deref(), Some("k-1"));
    assert_eq!(parsed_event.as_deref(), event);
    assert_eq!(parsed, data.replace("\r\n", "\n").replace('\r', "\n"));
});
