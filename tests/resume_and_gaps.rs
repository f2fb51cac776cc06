//! Resume from ids in history (no gap) and from ids that history no longer
//! holds or that belong to another epoch (a gap, told before the messages).

mod common;

use common::*;
use serde_json::Value;

async fn publish_many(addr: std::net::SocketAddr, channel: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..count {
        let answer = publish(addr, channel, i.to_string()).await;
        ids.push(answer["id"].as_str().unwrap().to_owned());
    }
    ids
}

#[tokio::test]
async fn resuming_from_an_id_still_in_history_reports_no_gap() {
    let server = start(|c| c.history.max_messages = 5).await;
    let ids = publish_many(server.addr, "g", 10).await;
    let since = &ids[5];
    let page = poll(server.addr, &format!("/sub/g?since={since}")).await;
    assert!(page.get("gap").is_none(), "{page}");
    assert_eq!(page["messages"].as_array().unwrap().len(), 4);
    let mut sse = Sse::open(server.addr, &format!("/sub/g?since={since}"), &[]).await;
    let first = sse.next().await.unwrap();
    assert_eq!(
        (first.event.as_str(), first.data.as_str()),
        ("message", "6")
    );
    let mut socket = websocket(server.addr, "/ws").await;
    ws_sub(&mut socket, "g", Some(since)).await;
    let first = next_json(&mut socket).await;
    assert_eq!(
        (first["op"].as_str(), first["data"].as_str()),
        (Some("msg"), Some("6"))
    );
}

#[tokio::test]
async fn resuming_from_a_trimmed_id_tells_of_the_gap_on_every_transport() {
    let server = start(|c| c.history.max_messages = 5).await;
    let ids = publish_many(server.addr, "g", 10).await;
    let since = &ids[1]; // 2..=4 are gone: history keeps 5..=9
    let page = poll(server.addr, &format!("/sub/g?since={since}")).await;
    assert_eq!(page["gap"], true);
    let gap = &page["gaps"][0];
    assert_eq!(
        (
            gap["channel"].as_str(),
            gap["reason"].as_str(),
            gap["missed"].as_u64()
        ),
        (Some("g"), Some("trimmed"), Some(3))
    );
    let data: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["data"].as_str().unwrap())
        .collect();
    assert_eq!(data, ["5", "6", "7", "8", "9"]);

    let mut sse = Sse::open(server.addr, &format!("/sub/g?since={since}"), &[]).await;
    let gap = sse.next().await.unwrap();
    assert_eq!(gap.event, "herald.gap");
    let gap: Value = serde_json::from_str(&gap.data).unwrap();
    assert_eq!(gap["reason"], "trimmed");
    assert_eq!(sse.next().await.unwrap().data, "5");

    let mut socket = websocket(server.addr, "/ws").await;
    ws_sub(&mut socket, "g", Some(since)).await;
    let gap = next_json(&mut socket).await;
    assert_eq!(
        (gap["op"].as_str(), gap["reason"].as_str()),
        (Some("gap"), Some("trimmed"))
    );
    assert_eq!(next_json(&mut socket).await["data"], "5");
}

#[tokio::test]
async fn an_id_from_another_epoch_is_a_gap() {
    let old = server().await;
    let stale = publish(old.addr, "e", "before restart").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A new server is a new history, as after a memory-engine restart.
    let server = server().await;
    publish(server.addr, "e", "after").await;
    let page = poll(server.addr, &format!("/sub/e?since={stale}")).await;
    assert_eq!(page["gap"], true);
    assert_eq!(page["gaps"][0]["reason"], "epoch");
    assert_eq!(page["messages"][0]["data"], "after");
    let mut sse = Sse::open(server.addr, "/sub/e", &[("last-event-id", &stale)]).await;
    assert_eq!(sse.next().await.unwrap().event, "herald.gap");
    let mut socket = websocket(server.addr, "/ws").await;
    ws_sub(&mut socket, "e", Some(&stale)).await;
    let gap = next_json(&mut socket).await;
    assert_eq!(
        (gap["op"].as_str(), gap["reason"].as_str()),
        (Some("gap"), Some("epoch"))
    );
}

#[tokio::test]
async fn since_zero_replays_everything_kept_without_a_gap() {
    let server = start(|c| c.history.max_messages = 3).await;
    publish_many(server.addr, "z", 6).await;
    let page = poll(server.addr, "/sub/z?since=0").await;
    assert!(page.get("gap").is_none());
    assert_eq!(page["messages"].as_array().unwrap().len(), 3);
}

/// `id` with its epoch replaced by another valid one.
fn forge_epoch(id: &str) -> String {
    let (epoch, seq) = id.split_once('-').expect("EPOCH-SEQ");
    let other = if epoch == "zzzzzz" {
        "yyyyyy"
    } else {
        "zzzzzz"
    };
    format!("{other}-{seq}")
}

#[tokio::test]
async fn a_forged_epoch_or_an_id_beyond_the_newest_is_an_epoch_gap() {
    let server = server().await;
    let ids = publish_many(server.addr, "f", 3).await;
    let (epoch, _) = ids[0].split_once('-').unwrap();
    for stale in [forge_epoch(&ids[1]), format!("{epoch}-99")] {
        let page = poll(server.addr, &format!("/sub/f?since={stale}")).await;
        assert_eq!(page["gap"], true, "{stale}: {page}");
        let gap = &page["gaps"][0];
        assert_eq!(gap["channel"], "f");
        assert_eq!(gap["reason"], "epoch");
        assert_eq!(gap["since"], stale.as_str());
        assert_eq!(gap["first_id"], ids[0].as_str());
        assert_eq!(page_data(&page), ["0", "1", "2"]);

        let mut sse = Sse::open(server.addr, &format!("/sub/f?lastEventId={stale}"), &[]).await;
        let event = sse.next().await.unwrap();
        assert_eq!(event.event, "herald.gap");
        let gap: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(
            (gap["channel"].as_str(), gap["reason"].as_str()),
            (Some("f"), Some("epoch"))
        );
        let event = sse.next().await.unwrap();
        assert_eq!(
            (event.id.as_str(), event.data.as_str()),
            (ids[0].as_str(), "0")
        );
    }
}

#[tokio::test]
async fn gap_reports_name_the_channel_what_was_missed_and_where_delivery_resumes() {
    let server = start(|c| c.history.max_messages = 3).await;
    let ids = publish_many(server.addr, "d", 8).await;
    // History keeps 5, 6, 7; resuming after 1 misses 2, 3, 4.
    let mut sse = Sse::open(server.addr, "/sub/d", &[("last-event-id", &ids[1])]).await;
    let event = sse.next().await.unwrap();
    assert_eq!(event.event, "herald.gap");
    let gap: Value = serde_json::from_str(&event.data).unwrap();
    let expected = serde_json::json!({
        "channel": "d", "reason": "trimmed", "since": ids[1], "missed": 3, "first_id": ids[5],
    });
    assert_eq!(gap, expected);
    let data: Vec<String> = sse.messages(3).await.into_iter().map(|e| e.data).collect();
    assert_eq!(data, ["5", "6", "7"]);

    let mut socket = websocket(server.addr, "/ws").await;
    ws_sub(&mut socket, "d", Some(&ids[1])).await;
    let mut frame = next_json(&mut socket).await;
    assert_eq!(frame["op"], "gap");
    frame.as_object_mut().unwrap().remove("op");
    assert_eq!(frame, expected);
}

#[tokio::test]
async fn on_a_multi_channel_cursor_only_the_trimmed_channel_reports_a_gap() {
    let server = start(|c| c.history.max_messages = 3).await;
    let kept = publish_many(server.addr, "kept", 2).await;
    let lost = publish_many(server.addr, "lost", 6).await;
    let cursor = format!("kept%3D{},lost%3D{}", kept[0], lost[0]);
    let page = poll(server.addr, &format!("/sub/kept,lost?since={cursor}")).await;
    assert_eq!(page["gap"], true);
    let gaps = page["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{page}");
    assert_eq!(gaps[0]["channel"], "lost");
    assert_eq!(gaps[0]["missed"], 2);
    let got: Vec<(String, String)> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["channel"].as_str().unwrap().to_owned(),
                m["data"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> =
        [("kept", "1"), ("lost", "3"), ("lost", "4"), ("lost", "5")]
            .into_iter()
            .map(|(c, d)| (c.to_owned(), d.to_owned()))
            .collect();
    assert_eq!(got, expected);

    let mut sse = Sse::open(server.addr, &format!("/sub/kept,lost?since={cursor}"), &[]).await;
    let mut events = Vec::new();
    for _ in 0..5 {
        let e = sse.next().await.unwrap();
        events.push((e.event, e.data));
    }
    let gaps: Vec<&(String, String)> = events.iter().filter(|(e, _)| e == "herald.gap").collect();
    assert_eq!(gaps.len(), 1, "{events:?}");
    assert!(gaps[0].1.contains("\"lost\""), "{events:?}");
}

#[tokio::test]
async fn messages_that_age_out_of_history_are_a_gap_for_a_late_resume() {
    let server = start(|c| c.history.ttl = std::time::Duration::from_millis(200)).await;
    // A live subscriber keeps the channel (and its epoch) from being forgotten.
    let _watcher = Sse::open(server.addr, "/sub/aging", &[]).await;
    wait_for_subscribers(server.addr, "aging", 1).await;
    let before = publish(server.addr, "aging", "start").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    publish(server.addr, "aging", "expires").await;
    within("history to age out", async {
        loop {
            let (_, info) = get_json(server.addr, "/pub/aging").await;
            if info["messages"] == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    let page = poll(server.addr, &format!("/sub/aging?since={before}&timeout=0")).await;
    assert_eq!(page["gap"], true, "{page}");
    assert_eq!(page["gaps"][0]["reason"], "trimmed");
    assert_eq!(page["gaps"][0]["missed"], 1);
    assert!(page_data(&page).is_empty());
}
