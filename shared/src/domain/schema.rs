//! The input contract's JSON Schema (`statemachine/input.schema.json`), generated from the Rust
//! input types so that the console's schema and the validator cannot drift apart. The schema
//! gives structure and types; the AWS rules (patterns, lengths, known regions) are enforced by
//! [`crate::domain::validate`], with messages that name the field.

use crate::domain::input::ProvisionInput;

/// The schema, pretty-printed with a trailing newline (the checked-in file's exact text).
pub fn input_schema() -> String {
    let mut schema = serde_json::to_value(schemars::schema_for!(ProvisionInput)).unwrap_or_default();
    if let Some(obj) = schema.as_object_mut() {
        // A delete may name only the deployment (the rest is completed from its record,
        // `ctx::recall`): the fields apply requires are required unless `action` is
        // `delete`.
        obj.insert("required".into(), serde_json::json!(["deploymentName"]));
        obj.insert(
            "if".into(),
            serde_json::json!({"properties": {"action": {"const": "delete"}}, "required": ["action"]}),
        );
        obj.insert("else".into(), serde_json::json!({"required": crate::domain::input::DELETE_MAY_OMIT}));
        obj.insert("title".into(), "o11y-provisioner input".into());
        obj.insert(
            "description".into(),
            "Input of the o11y-provisioner state machine (the Step Functions console). Field rules: see README, Input contract."
                .into(),
        );
    }
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}
