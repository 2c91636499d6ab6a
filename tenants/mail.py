"""KiwiClaw sends no email. Anything Django would mail (e.g. error reports) is written to the log instead,
so nothing is lost and no SMTP server is needed."""

import logging

from django.core.mail.backends.base import BaseEmailBackend

logger = logging.getLogger("kiwiclaw.mail")


class LogEmailBackend(BaseEmailBackend):
    def send_messages(self, email_messages):
        for message in email_messages:
            logger.info("Mail not sent (no outgoing mail) to %s: %s\n%s", ", ".join(message.recipients()),
                        message.subject, message.body)
        return len(email_messages)
