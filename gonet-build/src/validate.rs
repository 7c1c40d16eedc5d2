//! Checks on the schema model; every problem is collected, none stops the others.

use std::collections::HashMap;

use crate::error::{Problem, ProblemKind};
use crate::model::{EMPTY, Location, Schema};

/// The first id of the framework's reserved range (`gonet::RESERVED_ID_START`).
const RESERVED_ID_START: u32 = 0xFFFF_FF00;

/// Every problem of `schema`: duplicate and reserved ids, services using messages
/// without ids, request types routed twice, streaming rpcs.
pub(crate) fn check(schema: &Schema) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut ids: HashMap<u32, (String, Location)> = HashMap::new();
    for msg in &schema.messages {
        let Some(id) = msg.id else { continue };
        if id == 0 || id >= RESERVED_ID_START {
            problems.push(Problem::at(
                msg.location.clone(),
                ProblemKind::ReservedId {
                    id,
                    name: msg.full_name(),
                },
            ));
            continue;
        }
        match ids.get(&id) {
            Some((other, other_location)) => problems.push(Problem::at(
                msg.location.clone(),
                ProblemKind::DuplicateId {
                    id,
                    name: msg.full_name(),
                    other: other.clone(),
                    other_location: other_location.clone(),
                },
            )),
            None => {
                ids.insert(id, (msg.full_name(), msg.location.clone()));
            }
        }
    }

    for svc in &schema.services {
        let mut requests: HashMap<&str, &str> = HashMap::new();
        for method in &svc.methods {
            let streaming = match (method.client_streaming, method.server_streaming) {
                (true, true) => Some("request and reply"),
                (true, false) => Some("request"),
                (false, true) => Some("reply"),
                (false, false) => None,
            };
            if let Some(which) = streaming {
                problems.push(Problem::at(
                    method.location.clone(),
                    ProblemKind::Streaming {
                        service: svc.full_name(),
                        method: method.name.clone(),
                        which,
                    },
                ));
            }
            let mut needs_id = vec![(&method.input, "request")];
            if !method.is_one_way() {
                needs_id.push((&method.output, "reply"));
            }
            for (message, role) in needs_id {
                let has_id = schema.message(message).is_some_and(|m| m.id.is_some());
                if !has_id {
                    let hint = if message == EMPTY {
                        " (google.protobuf.Empty cannot carry one; declare an empty message with an id)"
                    } else {
                        ""
                    };
                    problems.push(Problem::at(
                        method.location.clone(),
                        ProblemKind::MissingId {
                            service: svc.full_name(),
                            method: method.name.clone(),
                            message: message.clone(),
                            role,
                            hint,
                        },
                    ));
                }
            }
            if let Some(first) = requests.insert(&method.input, &method.name) {
                problems.push(Problem::at(
                    method.location.clone(),
                    ProblemKind::DuplicateRequest {
                        service: svc.full_name(),
                        first: first.to_owned(),
                        second: method.name.clone(),
                        message: method.input.clone(),
                    },
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MessageDef, MethodDef, ServiceDef};

    fn msg(name: &str, id: Option<u32>, line: u32) -> MessageDef {
        MessageDef {
            package: "chat".into(),
            name: name.into(),
            id,
            location: Location::new("chat.proto", line),
        }
    }

    #[test]
    fn every_problem_is_reported_at_its_line() {
        let schema = Schema {
            messages: vec![
                msg("Say", Some(101), 3),
                msg("Again", Some(101), 4),
                msg("Zero", Some(0), 5),
                msg("High", Some(0xFFFF_FF01), 6),
                msg("NoId", None, 7),
            ],
            services: vec![ServiceDef {
                package: "chat".into(),
                name: "Chat".into(),
                methods: vec![
                    MethodDef {
                        name: "A".into(),
                        input: "chat.Say".into(),
                        output: "chat.NoId".into(),
                        location: Location::new("chat.proto", 10),
                        ..Default::default()
                    },
                    MethodDef {
                        name: "B".into(),
                        input: "chat.Say".into(),
                        output: EMPTY.into(),
                        server_streaming: true,
                        location: Location::new("chat.proto", 11),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
        };
        let got: Vec<String> = check(&schema).iter().map(ToString::to_string).collect();
        assert_eq!(got.len(), 6, "{got:#?}");
        assert!(got[0].starts_with("chat.proto:4: error: gonet id 101 of chat.Again is already used by chat.Say at chat.proto:3"));
        assert!(got[1].starts_with("chat.proto:5: error: gonet id 0x0 of chat.Zero is reserved"));
        assert!(
            got[2].starts_with("chat.proto:6: error: gonet id 0xffffff01 of chat.High is reserved")
        );
        assert!(got[3].starts_with("chat.proto:10: error: rpc chat.Chat.A uses chat.NoId as its reply, but chat.NoId has no id"));
        assert!(got[4].starts_with("chat.proto:11: error: rpc chat.Chat.B streams its reply"));
        assert!(got[5].starts_with(
            "chat.proto:11: error: rpcs chat.Chat.A and chat.Chat.B both take chat.Say"
        ));
    }
}
