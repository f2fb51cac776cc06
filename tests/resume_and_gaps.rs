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
