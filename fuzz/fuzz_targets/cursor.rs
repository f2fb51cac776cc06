//! Ids and cursors: any text parses or errors, never panics, and what parses
//! renders back to an equivalent cursor.
#![no_main]
use herald::hub::{ChannelName, Cursor, MessageId, Since};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(id) = text.parse::<MessageId>() {
        assert_eq!(id.to_string().parse::<MessageId>().ok(), Some(id));
    }
    let channels: Vec<ChannelName> = ["a", "news", "chat.room-1"]
        .iter()
        .map(|c| ChannelName::parse(c).unwrap())
        .collect();
    for n in 1..=channels.len() {
        if let Ok(starts) = Cursor::parse_since(text, &channels[..n]) {
            assert_eq!(starts.len(), n);
            let mut cursor = Cursor::new();
            for (channel, since) in channels[..n].iter().zip(&starts) {
                if let Since::After(id) = since {
                    cursor.set(channel, *id);
                }
            }
            if cursor.len() == n {
                let again = Cursor::parse_since(&cursor.render(), &channels[..n]).unwrap();
                assert_eq!(again, starts);
            }
        }
    }
    let _ = ChannelName::parse_list(text, 64);
});
