use super::{check, escape, expand, lenient, Vars};

fn x(template: &str, instance: u32) -> Result<String, String> {
    expand(
        template,
        &Vars {
            name: "web",
            instance,
        },
    )
}

#[test]
fn strict_templates_expand() {
    let cases: &[(&str, u32, &str)] = &[
        ("plain", 3, "plain"),
        ("", 0, ""),
        ("{instance}", 2, "2"),
        ("--port={8000 + instance}", 3, "--port=8003"),
        ("{instance+1}", 0, "1"),
        ("{ instance * 10 + 3 }", 2, "23"),
        ("{3 + instance * 10}", 2, "23"),
        ("{(instance + 1) * 10}", 2, "30"),
        ("{instance - 1}", 0, "-1"),
        ("{10 - 2 - 3}", 0, "5"),
        ("{name}", 1, "web"),
        ("/var/lib/{name}/{instance}", 1, "/var/lib/web/1"),
        ("{{instance}}", 4, "{instance}"),
        ("{{}}", 0, "{}"),
        ("a}}b{{c", 0, "a}b{c"),
        ("{{{instance}}}", 5, "{5}"),
        ("{8000}", 9, "8000"),
        ("{instance}{instance}", 7, "77"),
        ("héllo-{instance}-ß", 1, "héllo-1-ß"),
    ];
    for (t, i, want) in cases {
        assert_eq!(x(t, *i).as_deref(), Ok(*want), "{t} for {i}");
    }
}

#[test]
fn bad_templates_say_why() {
    let cases: &[(&str, &str)] = &[
        ("{}", "an empty `{}`"),
        ("{port}", "unknown name `port`"),
        ("{instance", "`{` without its `}`"),
        ("a}b", "a lone `}`"),
        ("{instance +}", "ends too soon"),
        ("{instance 1}", "unexpected `1`"),
        ("{instance / 2}", "`/` is not part of an expression"),
        ("{name + 1}", "takes no arithmetic"),
        ("{(instance}", "`(` without its `)`"),
        ("{99999999999999999999}", "too large"),
        ("{9223372036854775807 + instance}", "overflows"),
        ("{\"a\": 1}", "is not part of an expression"),
    ];
    for (t, want) in cases {
        let e = x(t, 1).expect_err(t);
        assert!(e.contains(want), "{t}: {e}");
        if !e.contains("overflows") {
            assert!(
                e.contains("{{ or }}"),
                "{t}: the message says how to write it: {e}"
            );
        }
    }
}

#[test]
fn a_check_covers_every_instance() {
    assert_eq!(check("--port={8000 + instance}", "web", 4), Ok(()));
    assert_eq!(check("no braces", "web", 4), Ok(()));
    // Instance 0 is fine, instance 1 overflows.
    let e = check("{9223372036854775807 - 1 + instance * 2}", "web", 2).expect_err("overflow");
    assert!(e.starts_with("for instance 1:"), "{e}");
    assert!(check("{nope}", "web", 1).is_err());
}

#[test]
fn escaped_text_expands_to_itself() {
    for text in ["", "plain", "{\"a\": {\"b\": 1}}", "}{", "{instance}", "{{"] {
        assert_eq!(x(&escape(text), 3).as_deref(), Ok(text), "{text}");
    }
}

#[test]
fn single_command_arguments_keep_braces_that_are_no_template() {
    // (argument, what instance 2 of `web` gets)
    let cases: &[(&str, &str)] = &[
        ("--port={8000 + instance}", "--port=8002"),
        ("{instance}", "2"),
        ("{name}-{instance}", "web-2"),
        ("{}", "{}"),
        ("find . -exec {} ;", "find . -exec {} ;"),
        ("{\"port\": 8000}", "{\"port\": 8000}"),
        ("{\"i\": {instance}}", "{\"i\": 2}"),
        ("{print $1}", "{print $1}"),
        ("awk '{ x = instance }'", "awk '{ x = instance }'"),
        ("{{instance}}", "{instance}"),
        ("{{", "{{"),
        ("}}", "}}"),
        ("}", "}"),
        ("{", "{"),
        ("{unknown}", "{unknown}"),
        ("a{b}c{instance}d}", "a{b}c2d}"),
        // The first `{` is no template; then `{{instance}}` is kept as written.
        ("{{{instance}}}", "{{instance}}"),
    ];
    for (arg, want) in cases {
        let t = lenient(arg);
        assert_eq!(x(&t, 2).as_deref(), Ok(*want), "{arg} (as {t})");
    }
}
