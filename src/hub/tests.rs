//! Properties of ids, resume, trimming and fan-out.

use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

fn name(s: &str) -> ChannelName {
    ChannelName::parse(s).unwrap()
}

fn draft(channel: &ChannelName, data: &str) -> Draft {
    Draft {
        channel: channel.clone(),
        event: None,
        data: Bytes::copy_from_slice(data.as_bytes()),
        kind: DataKind::Text,
        idempotency_key: None,
    }
}

fn limits(max_messages: usize) -> HistoryLimits {
    HistoryLimits {
        max_messages,
        ..HistoryLimits::default()
    }
}

fn drain(inbox: &mut Inbox) -> Vec<Arc<Message>> {
    std::iter::from_fn(|| inbox.try_recv()).collect()
}

proptest! {
    #[test]
    fn ids_are_strictly_increasing_and_gap_free(count in 1usize..300) {
        let hub = Hub::new(limits(50));
        let ch = name("c");
        let ids: Vec<MessageId> = (0..count).map(|i| hub.publish(draft(&ch, &i.to_string()), 1).id).collect();
        prop_assert!(ids.iter().all(|id| id.epoch == ids[0].epoch));
        for (i, id) in ids.iter().enumerate() {
            prop_assert_eq!(id.seq, i as u64 + 1);
        }
    }

    #[test]
    fn resume_from_any_kept_id_yields_exactly_the_suffix(
        count in 1usize..200, keep in 1usize..100, pick in any::<prop::sample::Index>(), live in 0usize..20
    ) {
        let hub = Hub::new(limits(keep));
        let ch = name("c");
        let ids: Vec<MessageId> = (0..count).map(|i| hub.publish(draft(&ch, &i.to_string()), 1).id).collect();
        // Any id from the one before the oldest kept up to the newest resumes without a gap.
        let first_kept = count.saturating_sub(keep);
        let from = first_kept.saturating_sub(1) + pick.index(count - first_kept.saturating_sub(1));
        let since = ids[from.min(count - 1)];
        let (subscriber, mut inbox) = SubscriberHandle::new(64);
        let replay = hub.attach(&ch, &subscriber, Since::After(since));
        prop_assert!(replay.gap.is_none());
        for i in 0..live {
            hub.publish(draft(&ch, &format!("live{i}")), 1);
        }
        let mut got: Vec<u64> = replay.messages.iter().map(|m| m.id.seq).collect();
        got.extend(drain(&mut inbox).iter().map(|m| m.id.seq));
        let expected: Vec<u64> = (since.seq + 1..=(count + live) as u64).collect();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn history_respects_count_bytes_and_age(
        sizes in proptest::collection::vec(0usize..400, 1..200),
        max_messages in 1usize..50, max_bytes in 100usize..5000, ttl_ms in 1u64..100, step_ms in 0u64..10
    ) {
        let limits = HistoryLimits { max_messages, max_bytes, ttl: Duration::from_millis(ttl_ms) };
        let hub = Hub::new(limits);
        let ch = name("c");
        let mut now = 1_000;
        for size in &sizes {
            now += step_ms;
            hub.publish(draft(&ch, &"x".repeat(*size)), now);
        }
        hub.sweep(now);
        if let Some(info) = hub.info(&ch, now) {
            prop_assert!(info.messages <= max_messages);
            prop_assert!(info.bytes <= max_bytes);
            if let (Some(first), Some(last)) = (info.first_id, info.last_id) {
                // What is kept is the newest contiguous run.
                prop_assert_eq!(last.seq - first.seq + 1, info.messages as u64);
                prop_assert_eq!(last.seq, sizes.len() as u64);
            }
            hub.with_existing(&ch, |state| {
                for m in state.history.iter() {
                    assert!(now - m.published_at_ms() < ttl_ms);
                }
            });
        }
    }

    #[test]
    fn ids_older_than_history_or_from_another_epoch_are_gaps(
        count in 7usize..100, keep in 1usize..5, other_epoch in any::<u64>()
    ) {
        let hub = Hub::new(limits(keep));
        let ch = name("c");
        let ids: Vec<MessageId> = (0..count).map(|i| hub.publish(draft(&ch, &i.to_string()), 1).id).collect();
        let (subscriber, _inbox) = SubscriberHandle::new(8);

        let old = ids[count - keep - 2];
        let replay = hub.attach(&ch, &subscriber, Since::After(old));
        let gap = replay.gap.expect("trimmed ids are a gap");
        prop_assert_eq!(gap.reason, GapReason::Trimmed);
        prop_assert_eq!(gap.missed, Some(1));
        prop_assert_eq!(replay.messages.len(), keep);

        prop_assume!(other_epoch != ids[0].epoch);
        let stale = MessageId::new(other_epoch, ids[count - 1].seq);
        let replay = hub.attach(&ch, &subscriber, Since::After(stale));
        prop_assert_eq!(replay.gap.map(|g| g.reason), Some(GapReason::Epoch));
        prop_assert_eq!(replay.messages.len(), keep);
    }
}

#[test]
fn a_full_queue_detaches_the_subscriber_and_signals_lag() {
    let hub = Hub::new(limits(100));
    let ch = name("c");
    let (slow, mut slow_inbox) = SubscriberHandle::new(2);
    let (fast, mut fast_inbox) = SubscriberHandle::new(100);
    hub.attach(&ch, &slow, Since::Now);
    hub.attach(&ch, &fast, Since::Now);
    for i in 0..5 {
        hub.publish(draft(&ch, &i.to_string()), 1);
    }
    assert_eq!(drain(&mut fast_inbox).len(), 5);
    assert_eq!(drain(&mut slow_inbox).len(), 2);
    assert_eq!(slow_inbox.take_signals(), vec![Signal::Lagged(ch.clone())]);
    // Catching up from the last id it got yields the rest, with no gap.
    let replay = hub.attach(
        &ch,
        &slow,
        Since::After(MessageId::new(
            hub.info(&ch, 1).unwrap().last_id.unwrap().epoch,
            2,
        )),
    );
    assert!(replay.gap.is_none());
    assert_eq!(replay.messages.len(), 3);
}

#[test]
fn idempotency_keys_return_the_first_result() {
    let hub = Hub::new(limits(100));
    let ch = name("c");
    let mut d = draft(&ch, "x");
    d.idempotency_key = Some("k1".into());
    let first = hub.publish(d.clone(), 1);
    let second = hub.publish(d, 2);
    assert_eq!(first, second);
    assert_eq!(hub.info(&ch, 2).unwrap().messages, 1);
}

#[test]
fn delete_signals_subscribers_and_forgets_history() {
    let hub = Hub::new(limits(100));
    let ch = name("c");
    let (subscriber, inbox) = SubscriberHandle::new(8);
    hub.attach(&ch, &subscriber, Since::Now);
    hub.publish(draft(&ch, "x"), 1);
    assert!(hub.delete(&ch));
    assert_eq!(inbox.take_signals(), vec![Signal::Deleted(ch.clone())]);
    assert!(hub.info(&ch, 1).is_none());
    assert!(!hub.delete(&ch));
}

#[test]
fn sweep_forgets_idle_channels_only() {
    let hub = Hub::new(HistoryLimits {
        ttl: Duration::from_millis(10),
        ..limits(10)
    });
    let busy = name("busy");
    let (subscriber, _inbox) = SubscriberHandle::new(8);
    hub.attach(&busy, &subscriber, Since::Now);
    hub.publish(draft(&name("quiet"), "x"), 1);
    hub.sweep(5);
    assert_eq!(hub.channel_count(), 2);
    hub.sweep(100);
    assert_eq!(hub.channel_count(), 1);
    assert!(hub.info(&busy, 100).is_some());
}

#[test]
fn a_queue_over_its_byte_limit_lags_but_one_large_message_still_fits() {
    let hub = Hub::new(limits(100));
    let ch = name("c");
    let (subscriber, mut inbox) = SubscriberHandle::with_limits(100, 1000);
    hub.attach(&ch, &subscriber, Since::Now);
    hub.publish(draft(&ch, &"x".repeat(2000)), 1);
    assert_eq!(
        drain(&mut inbox).len(),
        1,
        "an empty queue takes any one message"
    );
    hub.publish(draft(&ch, &"x".repeat(400)), 1);
    hub.publish(draft(&ch, &"x".repeat(400)), 1);
    hub.publish(draft(&ch, &"x".repeat(400)), 1);
    assert_eq!(drain(&mut inbox).len(), 2);
    assert_eq!(inbox.take_signals(), vec![Signal::Lagged(ch.clone())]);
}

#[test]
fn a_quiet_channel_keeps_its_epoch_for_a_ttl_after_its_last_subscriber_leaves() {
    let hub = Hub::new(HistoryLimits {
        ttl: Duration::from_millis(1000),
        ..limits(10)
    });
    let ch = name("quiet");
    let (subscriber, _inbox) = SubscriberHandle::new(8);
    let position = hub.attach(&ch, &subscriber, Since::Now).position;
    hub.sweep(10);
    hub.detach(&ch, subscriber.id());
    hub.sweep(500);
    let (again, _inbox) = SubscriberHandle::new(8);
    let replay = hub.attach(&ch, &again, Since::After(position));
    assert!(
        replay.gap.is_none(),
        "a reconnect within the TTL is not a gap"
    );
    hub.detach(&ch, again.id());
    hub.sweep(600);
    hub.sweep(3000);
    assert_eq!(hub.channel_count(), 0, "forgotten once quiet for a TTL");
}

#[tokio::test]
async fn a_waiting_inbox_wakes_for_a_message_and_a_dropped_one_closes_its_handle() {
    let hub = Hub::new(limits(10));
    let ch = name("wake");
    let (subscriber, mut inbox) = SubscriberHandle::new(4);
    hub.attach(&ch, &subscriber, Since::Now);
    let waiting = tokio::spawn(async move {
        let message = inbox.wait().await;
        (message, inbox)
    });
    tokio::task::yield_now().await;
    hub.publish(draft(&ch, "hello"), 1);
    let (message, inbox) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("woken within 5 s")
        .expect("the waiting task ran");
    assert_eq!(&message.expect("a message").data[..], b"hello");
    assert!(!subscriber.is_closed());
    drop(inbox);
    assert!(subscriber.is_closed());
    let message = hub.publish(draft(&ch, "after"), 1);
    assert_eq!(message.id.seq, 2);
}
