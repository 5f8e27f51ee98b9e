"""The gettext catalogues (<locale>/LC_MESSAGES/messages.po); see newsletter.i18n."""
