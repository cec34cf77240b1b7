//! CloudFormation's XML answers (the AWS query protocol) to DescribeStacks: the stacks, each
//! with its status and outputs, or the error. Read with the AWS SDK's own XML decoder (already
//! linked for STS credentials), which unescapes entities and keeps each element in its scope: an
//! output's `Description` is never taken for the stack's, nor a parameter's or a tag's `member`
//! for an output's.

use aws_smithy_xml::decode::{try_data, Document, ScopedDecoder, XmlDecodeError};
use thiserror::Error;

/// One stack of a DescribeStacks answer, with what `--stack` needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    pub id: String,
    pub name: String,
    /// `CREATE_COMPLETE`, `UPDATE_IN_PROGRESS`, `ROLLBACK_COMPLETE`, …
    pub status: String,
    /// Why it is in that status, when CloudFormation says (a failed resource, "User Initiated").
    pub status_reason: Option<String>,
    /// In the answer's order.
    pub outputs: Vec<Output>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub key: String,
    pub value: String,
}

impl Stack {
    /// The value of the output `key`, if the stack has it.
    pub fn output(&self, key: &str) -> Option<&str> {
        self.outputs
            .iter()
            .find(|o| o.key == key)
            .map(|o| o.value.as_str())
    }
}

/// An error answer: `<ErrorResponse><Error><Type>Sender</Type><Code>…</Code><Message>…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorAnswer {
    /// `Sender` (the request is at fault) or `Receiver` (AWS is).
    pub fault: String,
    /// `ValidationError`, `AccessDenied`, `ExpiredToken`, `Throttling`, …
    pub code: String,
    pub message: String,
}

/// The answer is not the XML it should be.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct Malformed(String);

impl From<XmlDecodeError> for Malformed {
    fn from(e: XmlDecodeError) -> Self {
        Malformed(e.to_string())
    }
}

/// The stacks of a `DescribeStacksResponse`.
pub fn stacks(xml: &str) -> Result<Vec<Stack>, Malformed> {
    let mut doc = Document::new(xml);
    let mut root = doc.root_element()?;
    if !root.start_el().matches("DescribeStacksResponse") {
        return Err(Malformed(format!(
            "expected a DescribeStacksResponse, found <{}>",
            root.start_el().local()
        )));
    }
    let mut stacks = Vec::new();
    while let Some(mut result) = root.next_tag() {
        if !result.start_el().matches("DescribeStacksResult") {
            continue;
        }
        while let Some(mut list) = result.next_tag() {
            if !list.start_el().matches("Stacks") {
                continue;
            }
            while let Some(mut member) = list.next_tag() {
                if member.start_el().matches("member") {
                    stacks.push(stack(&mut member)?);
                }
            }
        }
    }
    Ok(stacks)
}

fn stack(member: &mut ScopedDecoder<'_, '_>) -> Result<Stack, Malformed> {
    let (mut id, mut name, mut status, mut status_reason) = (None, None, None, None);
    let mut outputs = Vec::new();
    while let Some(mut field) = member.next_tag() {
        let el = field.start_el();
        if el.matches("StackId") {
            id = Some(text(&mut field)?);
        } else if el.matches("StackName") {
            name = Some(text(&mut field)?);
        } else if el.matches("StackStatus") {
            status = Some(text(&mut field)?);
        } else if el.matches("StackStatusReason") {
            status_reason = Some(text(&mut field)?).filter(|r| !r.is_empty());
        } else if el.matches("Outputs") {
            while let Some(mut output_member) = field.next_tag() {
                if output_member.start_el().matches("member") {
                    outputs.push(output(&mut output_member)?);
                }
            }
        }
    }
    let missing = |what: &str| Malformed(format!("a stack without {what}"));
    Ok(Stack {
        id: id.ok_or_else(|| missing("StackId"))?,
        name: name.ok_or_else(|| missing("StackName"))?,
        status: status.ok_or_else(|| missing("StackStatus"))?,
        status_reason,
        outputs,
    })
}

fn output(member: &mut ScopedDecoder<'_, '_>) -> Result<Output, Malformed> {
    let (mut key, mut value) = (None, None);
    while let Some(mut field) = member.next_tag() {
        if field.start_el().matches("OutputKey") {
            key = Some(text(&mut field)?);
        } else if field.start_el().matches("OutputValue") {
            value = Some(text(&mut field)?);
        }
    }
    Ok(Output {
        key: key.ok_or_else(|| Malformed("an output without OutputKey".into()))?,
        // CloudFormation leaves out an empty value.
        value: value.unwrap_or_default(),
    })
}

/// The error of an `ErrorResponse`, if `xml` is one.
pub fn error(xml: &str) -> Option<ErrorAnswer> {
    let mut doc = Document::new(xml);
    let mut root = doc.root_element().ok()?;
    if !root.start_el().matches("ErrorResponse") {
        return None;
    }
    while let Some(mut error) = root.next_tag() {
        if !error.start_el().matches("Error") {
            continue;
        }
        let (mut fault, mut code, mut message) = (String::new(), None, String::new());
        while let Some(mut field) = error.next_tag() {
            if field.start_el().matches("Type") {
                fault = text(&mut field).ok()?;
            } else if field.start_el().matches("Code") {
                code = Some(text(&mut field).ok()?);
            } else if field.start_el().matches("Message") {
                message = text(&mut field).ok()?;
            }
        }
        return Some(ErrorAnswer {
            fault,
            code: code.filter(|c| !c.is_empty())?,
            message,
        });
    }
    None
}

/// The text of an element (entities unescaped), trimmed.
fn text(el: &mut ScopedDecoder<'_, '_>) -> Result<String, Malformed> {
    Ok(try_data(el)?.trim().to_owned())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A DescribeStacks answer in the shape of the API reference's example, filled out as a
    /// deployed oen-pay stack answers: parameters, capabilities, tags and outputs are all lists
    /// of `member`s; outputs carry a `Description` of their own, before or after the key; the
    /// merchant API's output is neither first nor alone, and another key starts with its name.
    pub(crate) const DEPLOYED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeStacksResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">
  <DescribeStacksResult>
    <Stacks>
      <member>
        <StackId>arn:aws:cloudformation:ap-northeast-1:123456789012:stack/oen-pay/aaf549a0-a413-11df-adb3-5081b3858e83</StackId>
        <StackName>oen-pay</StackName>
        <ChangeSetId>arn:aws:cloudformation:ap-northeast-1:123456789012:changeSet/samcli-deploy1764460800/1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d</ChangeSetId>
        <Description>oen-pay: subscriptions charged through Oen &amp; a merchant API (&lt;OutputKey&gt;MerchantApiUrl&lt;/OutputKey&gt; is &quot;signed&quot;; it&apos;s SigV4)</Description>
        <Parameters>
          <member>
            <ParameterKey>OenEnvironment</ParameterKey>
            <ParameterValue>testing</ParameterValue>
          </member>
          <member>
            <ParameterKey>DomainName</ParameterKey>
            <ParameterValue></ParameterValue>
          </member>
        </Parameters>
        <CreationTime>2026-11-29T08:00:00.000Z</CreationTime>
        <LastUpdatedTime>2026-11-30T02:15:41.512Z</LastUpdatedTime>
        <RollbackConfiguration/>
        <StackStatus>UPDATE_COMPLETE</StackStatus>
        <DisableRollback>false</DisableRollback>
        <NotificationARNs/>
        <Capabilities>
          <member>CAPABILITY_IAM</member>
          <member>CAPABILITY_AUTO_EXPAND</member>
        </Capabilities>
        <Outputs>
          <member>
            <Description>The HTTP API: start links go to $ApiUrl/checkout/start</Description>
            <OutputKey>ApiUrl</OutputKey>
            <OutputValue>https://a1b2c3d4e5.execute-api.ap-northeast-1.amazonaws.com</OutputValue>
          </member>
          <member>
            <OutputKey>MerchantApiUrlLegacy</OutputKey>
            <OutputValue>https://old.example.com/v0</OutputValue>
          </member>
          <member>
            <OutputKey>MerchantApiUrl</OutputKey>
            <OutputValue>https://a1b2c3d4e5.execute-api.ap-northeast-1.amazonaws.com/v1</OutputValue>
            <Description>Base URL of the merchant API (/v1/…), the same HTTP API as ApiUrl; every request must be signed with SigV4 (service execute-api)</Description>
          </member>
          <member>
            <OutputKey>WebhookUrlToRegisterWithOen</OutputKey>
            <OutputValue>https://a1b2c3d4e5.execute-api.ap-northeast-1.amazonaws.com/oen/webhook/{webhookPathKey}?a=1&amp;b=&lt;2&gt;&#x21;</OutputValue>
            <Description>The webhook URL to register in Oen&apos;s back office</Description>
            <ExportName>oen-pay-webhook</ExportName>
          </member>
        </Outputs>
        <Tags>
          <member>
            <Key>project</Key>
            <Value>oen-pay &amp; co</Value>
          </member>
        </Tags>
        <EnableTerminationProtection>false</EnableTerminationProtection>
        <DriftInformation>
          <StackDriftStatus>NOT_CHECKED</StackDriftStatus>
        </DriftInformation>
      </member>
    </Stacks>
  </DescribeStacksResult>
  <ResponseMetadata>
    <RequestId>b9b4b068-3a41-11e5-94eb-example</RequestId>
  </ResponseMetadata>
</DescribeStacksResponse>
"#;

    /// A stack while it is first created: no outputs yet.
    pub(crate) const CREATING: &str = r#"<DescribeStacksResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">
  <DescribeStacksResult>
    <Stacks>
      <member>
        <StackId>arn:aws:cloudformation:ap-northeast-1:123456789012:stack/oen-pay/0b9c8d7e-a413-11df-adb3-5081b3858e83</StackId>
        <StackName>oen-pay</StackName>
        <Description>oen-pay</Description>
        <CreationTime>2026-11-30T08:00:00.000Z</CreationTime>
        <StackStatus>CREATE_IN_PROGRESS</StackStatus>
        <StackStatusReason>User Initiated</StackStatusReason>
        <DisableRollback>false</DisableRollback>
        <NotificationARNs/>
        <Outputs/>
        <Tags/>
      </member>
    </Stacks>
  </DescribeStacksResult>
  <ResponseMetadata>
    <RequestId>c0ffee00-3a41-11e5-94eb-example</RequestId>
  </ResponseMetadata>
</DescribeStacksResponse>"#;

    /// CloudFormation's answer for a stack name it does not know (HTTP 400).
    pub(crate) const NO_SUCH_STACK: &str = r#"<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">
  <Error>
    <Type>Sender</Type>
    <Code>ValidationError</Code>
    <Message>Stack with id oen-pay-typo does not exist</Message>
  </Error>
  <RequestId>5ccc7dcd-744c-11e5-be70-example</RequestId>
</ErrorResponse>
"#;

    #[test]
    fn a_deployed_stack_gives_its_status_and_every_output_unescaped() {
        let stacks = stacks(DEPLOYED).unwrap();
        assert_eq!(stacks.len(), 1);
        let stack = &stacks[0];
        assert_eq!(stack.name, "oen-pay");
        assert!(stack
            .id
            .ends_with(":stack/oen-pay/aaf549a0-a413-11df-adb3-5081b3858e83"));
        assert_eq!(stack.status, "UPDATE_COMPLETE");
        assert_eq!(stack.status_reason, None);
        let keys: Vec<&str> = stack.outputs.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "ApiUrl",
                "MerchantApiUrlLegacy",
                "MerchantApiUrl",
                "WebhookUrlToRegisterWithOen"
            ],
            "parameters and tags are not outputs"
        );
        assert_eq!(
            stack.output("MerchantApiUrl"),
            Some("https://a1b2c3d4e5.execute-api.ap-northeast-1.amazonaws.com/v1")
        );
        assert_eq!(
            stack.output("WebhookUrlToRegisterWithOen"),
            Some(
                "https://a1b2c3d4e5.execute-api.ap-northeast-1.amazonaws.com/oen/webhook/\
                 {webhookPathKey}?a=1&b=<2>!"
            )
        );
        assert_eq!(stack.output("Merchant"), None);
    }

    #[test]
    fn a_stack_being_created_has_its_status_and_no_outputs() {
        let stacks = stacks(CREATING).unwrap();
        assert_eq!(stacks[0].status, "CREATE_IN_PROGRESS");
        assert_eq!(stacks[0].status_reason.as_deref(), Some("User Initiated"));
        assert!(stacks[0].outputs.is_empty());
        assert_eq!(stacks[0].output("MerchantApiUrl"), None);
    }

    #[test]
    fn entities_are_unescaped_in_every_field() {
        let xml = DEPLOYED.replace(
            "<StackStatus>UPDATE_COMPLETE</StackStatus>",
            "<StackStatus>UPDATE_COMPLETE</StackStatus><StackStatusReason>a &amp; b &lt;c&gt; \
             &quot;d&quot; &apos;e&apos; &#233;</StackStatusReason>",
        );
        assert_eq!(
            stacks(&xml).unwrap()[0].status_reason.as_deref(),
            Some("a & b <c> \"d\" 'e' é")
        );
    }

    #[test]
    fn the_error_answer_gives_its_code_and_message() {
        assert_eq!(
            error(NO_SUCH_STACK),
            Some(ErrorAnswer {
                fault: "Sender".into(),
                code: "ValidationError".into(),
                message: "Stack with id oen-pay-typo does not exist".into(),
            })
        );
        let denied = r#"<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">
  <Error>
    <Type>Sender</Type>
    <Code>AccessDenied</Code>
    <Message>User: arn:aws:iam::123456789012:user/mei is not authorized to perform: cloudformation:DescribeStacks on resource: arn:aws:cloudformation:ap-northeast-1:123456789012:stack/oen-pay/* because no identity-based policy allows the cloudformation:DescribeStacks action &amp; more</Message>
  </Error>
  <RequestId>3f1b7c2e-0000-4000-8000-example</RequestId>
</ErrorResponse>"#;
        let e = error(denied).unwrap();
        assert_eq!(e.code, "AccessDenied");
        assert!(e.message.ends_with("action & more"), "{}", e.message);
    }

    #[test]
    fn other_answers_are_neither_stacks_nor_errors() {
        assert_eq!(error(DEPLOYED), None);
        assert!(stacks(NO_SUCH_STACK).is_err());
        for body in [
            "",
            "<html><body>502 Bad Gateway</body></html>",
            "{\"message\":\"Forbidden\"}",
        ] {
            assert_eq!(error(body), None, "{body}");
            assert!(stacks(body).is_err(), "{body}");
        }
        let no_code = "<ErrorResponse><Error><Message>m</Message></Error></ErrorResponse>";
        assert_eq!(error(no_code), None);
        let empty = "<DescribeStacksResponse><DescribeStacksResult><Stacks/>\
                     </DescribeStacksResult></DescribeStacksResponse>";
        assert_eq!(stacks(empty), Ok(vec![]));
    }
}
