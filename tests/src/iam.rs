//! Reading and writing the IAM roles' trust policies of the local stack.

use o11y_shared::aws::Clients;
use o11y_shared::policy;
use serde_json::Value;

/// The trust policy of `role`, or `None` when the role does not exist.
pub async fn trust_of(clients: &Clients, role: &str) -> Option<Value> {
    let r = clients.iam.get_role().role_name(role).send().await.ok()?;
    Some(policy::decode_document(r.role()?.assume_role_policy_document()?).expect("trust policy JSON"))
}

/// Replaces the trust policy of `role` with `doc`.
pub async fn set_trust(clients: &Clients, role: &str, doc: &Value) {
    clients
        .iam
        .update_assume_role_policy()
        .role_name(role)
        .policy_document(doc.to_string())
        .send()
        .await
        .expect("update assume role policy");
}

/// The statements of a policy document (`Statement` an array or a single object).
pub fn statements(doc: &Value) -> Vec<Value> {
    match &doc["Statement"] {
        Value::Array(a) => a.clone(),
        s @ Value::Object(_) => vec![s.clone()],
        _ => Vec::new(),
    }
}
