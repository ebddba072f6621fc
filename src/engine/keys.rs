//! What the engine reads of an event before it touches its state: the index of the
//! event's model in the SLA and the join key of its request. Computing them is pure, so a
//! shell may do it beside the engine (a file replay does, on each file's decoding thread)
//! and hand them in with the event.

use crate::config::SlaConfig;
use crate::event::Event;
use crate::join::RequestKey;

/// An event's model index and request key, for one SLA's model list. The list is fixed
/// for an engine's life (a reload that changes it is refused), so keys computed with any
/// version of the engine's SLA hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventKeys {
    /// `None`: the SLA has no such model.
    pub(super) model: Option<u32>,
    pub(super) request: RequestKey,
}

impl EventKeys {
    pub fn new(config: &SlaConfig, model_id: &str, request_id: &str) -> EventKeys {
        EventKeys {
            model: config.model(model_id).map(|(i, _)| i as u32),
            request: RequestKey::of(request_id),
        }
    }

    /// The keys of a decoded inference or label; `None` for an ack, which has none.
    pub fn of(config: &SlaConfig, event: &Event) -> Option<EventKeys> {
        match event {
            Event::Inference(e) => Some(EventKeys::new(config, &e.model_id, &e.request_id)),
            Event::Label(e) => Some(EventKeys::new(config, &e.model_id, &e.request_id)),
            Event::Ack(_) => None,
        }
    }
}
